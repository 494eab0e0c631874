package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/sightline-io/sightline/server/trace"
)

func runTrace(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("trace", "[--server URL] [--format tree|json] (TRACE_ID | --span ROW_ID)",
		"Assembles a trace on a Sightline server (GET /api/v1/traces) and prints it as a tree: each span with its\n"+
			"observation point, protocol, request, status, duration, self time and the rule that linked it.", stderr)
	server := fs.String("server", "http://127.0.0.1:7070", "server base URL")
	format := fs.String("format", "tree", "output format: tree or json")
	span := fs.Uint64("span", 0, "assemble around this l7_flow_log _id instead of a trace id")
	timeout := fs.Duration("timeout", 30*time.Second, "request timeout")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if (*span == 0) == (fs.NArg() != 1) || fs.NArg() > 1 {
		fmt.Fprintln(stderr, "sightline trace: give either one TRACE_ID or --span ROW_ID")
		fs.Usage()
		return errUsage
	}
	if *format != "tree" && *format != "json" {
		fmt.Fprintf(stderr, "sightline trace: unknown --format %q\n", *format)
		return errUsage
	}
	u := strings.TrimRight(*server, "/") + "/api/v1/traces"
	if *span != 0 {
		u += "?span=" + strconv.FormatUint(*span, 10)
	} else {
		u += "/" + url.PathEscape(fs.Arg(0))
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return fmt.Errorf("build request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("trace %s: %w", u, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 256<<20))
	if err != nil {
		return fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(raw, &e) == nil && e.Error != "" {
			return fmt.Errorf("trace: %s: %s", resp.Status, e.Error)
		}
		return fmt.Errorf("trace: %s: %s", resp.Status, bytes.TrimSpace(raw))
	}
	if *format == "json" {
		_, err = stdout.Write(append(bytes.TrimSpace(raw), '\n'))
		return err
	}
	var t trace.Trace
	if err := json.Unmarshal(raw, &t); err != nil {
		return fmt.Errorf("decode trace: %w", err)
	}
	if len(t.Spans) == 0 {
		return errors.New("trace: no spans")
	}
	return t.WriteTree(stdout)
}
