// Package replay runs a pcap or pcapng file through the same decoding,
// reassembly, parsers and session logic as the live agent, and writes one
// l7_flow_log row per line. It is the library behind `sightline replay`.
package replay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/agent/session"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/packet/decode"
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
	// Reassembly bounds the TCP reassembly; zero fields take its defaults.
	Reassembly reassembly.Config
	Logger     *slog.Logger // optional
}

// Stats reports what a Run read, decoded, reassembled and emitted.
type Stats struct {
	Format        string // "pcap", "pcapng" or "pcap.gz"
	Frames        uint64
	Rows          uint64
	First, Last   time.Time // capture time of the first and latest frame
	TruncatedFile bool      // the file ended inside a record (the rest was used)

	Decode     decode.Stats
	Reassembly reassembly.Stats
	Session    session.Stats
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
		if encErr != nil {
			return
		}
		st.Rows++
		row.ID = st.Rows
		line = append(row.AppendJSON(line[:0]), '\n')
		if _, err := bw.Write(line); err != nil {
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
			asm.Packet(&pkt, fr.Time)
		}
		if st.Last.Sub(lastExpire) >= expireEvery {
			lastExpire = st.Last
			asm.Expire(st.Last)
			sess.Expire(st.Last)
		}
		if encErr != nil {
			break
		}
	}
	asm.FlushAll(st.Last)
	sess.FlushAll(st.Last)
	st.Decode, st.Reassembly, st.Session = dec.Stats, asm.Stats(), sess.Stats()
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
