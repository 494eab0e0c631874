package redis

import (
	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/internal/parsertest"
)

// The table tests write segments with the shared helpers.
type seg = parsertest.Seg

var req, resp, split = parsertest.Req, parsertest.Resp, parsertest.Split

func run(p *Parser, segs []seg, closeAt bool) []l7.Message { return parsertest.Run(p, segs, closeAt) }
