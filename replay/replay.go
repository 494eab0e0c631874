// Package replay runs a pcap or pcapng file through the same decoding,
// reassembly, parsers and session logic as the live agent, and writes one
// l7_flow_log row per line. It is the library behind `sightline replay`.
package replay

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/session"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/packet/decode"
	"github.com/sightline-io/sightline/packet/flow"
	"github.com/sightline-io/sightline/packet/pcapfile"
	"github.com/sightline-io/sightline/packet/reassembly"
)

// FormatJSONL is the only output format: one JSON object per row, keys are
// the l7_flow_log column names.
const FormatJSONL = "jsonl"

// Options configures Run.
type Options struct {
	Format    string // "jsonl" (default when empty)
	AgentID   string
	Host      string
	Protocols []l7.Protocol // the parsers, in inference order (required; see agent/l7/registry)
	// Table chooses the rows printed: TableL7 (default when empty), TableL4,
	// or TableAll, where every line carries a "table" field naming its table.
	Table string
	// Reassembly bounds the TCP reassembly; zero fields take its defaults.
	Reassembly reassembly.Config
	// Flow configures the flow table behind l4_flow_log rows; zero fields
	// take its defaults (60 s periods: short captures give one row per flow).
	Flow   flow.Config
	Logger *slog.Logger // optional
}

// Tables replay can print.
const (
	TableL7  = "l7_flow_log"
	TableL4  = "l4_flow_log"
	TableAll = "all"
)

// Stats reports what a Run read, decoded, reassembled and emitted.
type Stats struct {
	Format        string // "pcap", "pcapng" or "pcap.gz"
	Frames        uint64
	Rows          uint64    // l7_flow_log rows printed
	L4Rows        uint64    // l4_flow_log rows printed
	First, Last   time.Time // capture time of the first and latest frame
	TruncatedFile bool      // the file ended inside a record (the rest was used)

	Decode     decode.Stats
	Reassembly reassembly.Stats
	Session    session.Stats
	Flow       flow.Stats
}

// expireEvery is how often, in capture time, timeouts are checked.
const expireEvery = time.Second

// ctxCheckEvery is how many frames pass between context checks.
const ctxCheckEvery = 4096

// Run replays the capture at path and writes its rows to w, numbering _id
// from 1 in emission order. Rows already written stay written when an error
// ends the run early; the error says why.
func Run(ctx context.Context, path string, w io.Writer, opts Options) (Stats, error) {
	var st Stats
	if opts.Format != "" && opts.Format != FormatJSONL {
		return st, fmt.Errorf("replay: unsupported format %q (want %q)", opts.Format, FormatJSONL)
	}
	table := opts.Table
	if table == "" {
		table = TableL7
	}
	if table != TableL7 && table != TableL4 && table != TableAll {
		return st, fmt.Errorf("replay: unknown table %q (want %s, %s or %s)", table, TableL7, TableL4, TableAll)
	}
	wantL7, wantL4 := table != TableL4, table != TableL7
	f, err := pcapfile.Open(path)
	if err != nil {
		return st, fmt.Errorf("replay: %w", err)
	}
	defer f.Close()
	st.Format = f.Format()

	protocols := opts.Protocols
	if len(protocols) == 0 {
		return st, errors.New("replay: no protocols to parse")
	}
	bw := bufio.NewWriterSize(w, 256<<10)
	var line []byte // reused for every row
	var encErr error
	sess := session.New(session.Config{
		Protocols: protocols,
		AgentID:   opts.AgentID,
		Host:      opts.Host,
		Now:       func() time.Time { return st.Last },
		Logger:    opts.Logger,
	}, func(row *flowlog.L7FlowLog) {
		if encErr != nil || !wantL7 {
			return
		}
		st.Rows++
		row.ID = st.Rows
		line = append(row.AppendJSON(line[:0]), '\n')
		if table == TableAll {
			line = tagTable(line, TableL7)
		}
		if _, err := bw.Write(line); err != nil {
			encErr = fmt.Errorf("replay: write row: %w", err)
		}
	})
	fcfg := opts.Flow
	if fcfg.AgentID == "" {
		fcfg.AgentID = opts.AgentID
	}
	if fcfg.Host == "" {
		fcfg.Host = opts.Host
	}
	flows := flow.New(fcfg, func(row *flowlog.L4FlowLog) {
		if encErr != nil || !wantL4 {
			return
		}
		st.L4Rows++
		row.ID = st.L4Rows
		b, err := json.Marshal(row)
		if err != nil {
			encErr = fmt.Errorf("replay: encode l4 row: %w", err)
			return
		}
		b = append(b, '\n')
		if table == TableAll {
			b = tagTable(b, TableL4)
		}
		if _, err := bw.Write(b); err != nil {
			encErr = fmt.Errorf("replay: write row: %w", err)
		}
	})
	asm := reassembly.New(opts.Reassembly, sess.Feed, sess.CloseConn)

	var (
		dec        decode.Decoder
		pkt        decode.Packet
		lastExpire time.Time
		readErr    error
	)
	for {
		if st.Frames%ctxCheckEvery == 0 {
			if err := ctx.Err(); err != nil {
				readErr = fmt.Errorf("replay: %w", err)
				break
			}
		}
		fr, err := f.Next()
		if err != nil {
			switch {
			case errors.Is(err, io.EOF):
			case errors.Is(err, io.ErrUnexpectedEOF):
				st.TruncatedFile = true
			default:
				readErr = fmt.Errorf("replay: %s after %d frames: %w", path, st.Frames, err)
			}
			break
		}
		st.Frames++
		if st.First.IsZero() {
			st.First = fr.Time
		}
		if fr.Time.After(st.Last) {
			st.Last = fr.Time
		}
		if dec.Decode(fr.LinkType, fr.Data, &pkt) == nil {
			if wantL4 {
				flows.Packet(&pkt, fr.Time, fr.WireLen)
			}
			if wantL7 {
				asm.Packet(&pkt, fr.Time)
			}
		}
		if st.Last.Sub(lastExpire) >= expireEvery {
			lastExpire = st.Last
			asm.Expire(st.Last)
			sess.Expire(st.Last)
			flows.Tick(st.Last)
		}
		if encErr != nil {
			break
		}
	}
	asm.FlushAll(st.Last)
	sess.FlushAll(st.Last)
	// The capture's end is not its flows' end: flows whose state already
	// says how they end (one FIN only, a handshake unanswered, closed and
	// lingering) are classified as their timeouts would; established flows
	// are reported as still open (Force Report) by FlushAll.
	end := st.Last.Add(max(durOr(fcfg.HalfCloseIdle, flow.DefaultHalfCloseIdle),
		durOr(fcfg.HandshakeIdle, flow.DefaultHandshakeIdle), durOr(fcfg.ClosedLinger, flow.DefaultClosedLinger)))
	flows.Tick(end)
	flows.FlushAll(end)
	st.Decode, st.Reassembly, st.Session, st.Flow = dec.Stats, asm.Stats(), sess.Stats(), flows.Stats()
	if err := bw.Flush(); err != nil && encErr == nil {
		encErr = fmt.Errorf("replay: write rows: %w", err)
	}
	switch {
	case encErr != nil:
		return st, encErr
	case readErr != nil:
		return st, readErr
	case st.Frames > 0 && dec.Stats.UnsupportedLink == st.Frames:
		return st, fmt.Errorf("replay: %s: no frame of a supported link type (%d frames)", path, st.Frames)
	}
	return st, nil
}

// tagTable puts a "table" field first in a JSON object line.
func tagTable(line []byte, table string) []byte {
	if len(line) < 2 || line[0] != '{' {
		return line
	}
	head := `{"table":"` + table + `"`
	if line[1] != '}' {
		head += ","
	}
	out := make([]byte, 0, len(line)+len(head))
	out = append(out, head...)
	return append(out, line[1:]...)
}

func durOr(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
