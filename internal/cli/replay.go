package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"text/tabwriter"

	"github.com/sightline-io/sightline/agent/tlstrack"
	"github.com/sightline-io/sightline/doctor"
	"github.com/sightline-io/sightline/replay"
)

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("replay", "[--format jsonl] FILE",
		"Reads a pcap or pcapng capture (Ethernet, Linux cooked SLL/SLL2, raw IP, loopback; VLAN tags),\n"+
			"reassembles TCP, runs the same parsers and session logic as the agent, and prints one JSON object\n"+
			"per l7_flow_log row (the contract's column names; signal_source 0, observation_point c/s/local);\n"+
			"with --table l4_flow_log one per TCP/UDP flow and period from the flow table instead, --table all both.", stderr)
	format := fs.String("format", "jsonl", "output format (jsonl)")
	host := fs.String("host", "", "value for the host column (default: empty)")
	stats := fs.Bool("stats", false, "print reassembly and session counters to stderr at the end")
	table := fs.String("table", replay.TableL7, "rows to print: l7_flow_log, l4_flow_log (one per flow and 60 s period), or all\n(all: each line has a \"table\" field)")
	var pf protocolFlags
	pf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	protocols, err := pf.protocols()
	if err != nil {
		fmt.Fprintf(stderr, "sightline replay: %v\n", err)
		return errUsage
	}
	if fs.NArg() != 1 {
		fmt.Fprintln(stderr, "sightline replay: exactly one capture FILE is required")
		fs.Usage()
		return errUsage
	}
	if *table != replay.TableL7 && *table != replay.TableL4 && *table != replay.TableAll {
		fmt.Fprintf(stderr, "sightline replay: unknown --table %q (supported: l7_flow_log, l4_flow_log, all)\n", *table)
		return errUsage
	}
	if *format != "jsonl" {
		fmt.Fprintf(stderr, "sightline replay: unknown --format %q (supported: jsonl)\n", *format)
		return errUsage
	}
	out := bufio.NewWriterSize(stdout, 1<<16)
	st, err := replay.Run(ctx, fs.Arg(0), out, replay.Options{
		Format:    *format,
		Host:      *host,
		Table:     *table,
		Protocols: protocols,
	})
	if ferr := out.Flush(); err == nil {
		err = ferr
	}
	if *stats {
		fmt.Fprintf(stderr, "%+v\n", st)
	}
	return err
}

func runDoctor(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("doctor", "[--format text|json] [--tls AGENT_URL]",
		"Probes what this kernel offers (BTF, tracefs, syscall and raw tracepoints, kprobes, fentry, uprobes,\n"+
			"perf events, ring buffer, AF_PACKET, cgroup v2, lockdown) and which Sightline features each enables.\n"+
			"Exits 1 when socket capture cannot work, naming the reason.", stderr)
	format := fs.String("format", "text", "output format: text or json")
	tlsURL := fs.String("tls", "", "instead, print which processes a running agent decrypts TLS for, and why not: its base URL "+
		"(the --metrics-listen address of `sightline agent`, or the API of `sightline up`, e.g. http://127.0.0.1:7070)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *tlsURL != "" {
		return printTLSCoverage(ctx, *tlsURL, *format, stdout, stderr)
	}
	rep := doctor.Run(ctx)
	var err error
	switch *format {
	case "json":
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	case "text":
		err = rep.WriteText(stdout)
	default:
		fmt.Fprintf(stderr, "sightline doctor: unknown --format %q\n", *format)
		return errUsage
	}
	if err != nil {
		return err
	}
	if !rep.CanCapture {
		fmt.Fprintf(stderr, "sightline doctor: socket capture cannot work here: %s\n", rep.Reason)
		return exitError{code: 1}
	}
	return nil
}

// printTLSCoverage fetches GET /debug/tls from a running agent and prints it.
func printTLSCoverage(ctx context.Context, base, format string, stdout, stderr io.Writer) error {
	if format != "text" && format != "json" {
		fmt.Fprintf(stderr, "sightline doctor: unknown --format %q\n", format)
		return errUsage
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimRight(base, "/")+"/debug/tls", nil)
	if err != nil {
		return fmt.Errorf("tls coverage: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("tls coverage: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("tls coverage: read: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("tls coverage: %s: %s", resp.Status, strings.TrimSpace(string(body)))
	}
	if format == "json" {
		_, err := stdout.Write(body)
		return err
	}
	var cov tlstrack.Coverage
	if err := json.Unmarshal(body, &cov); err != nil {
		return fmt.Errorf("tls coverage: decode: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PID\tCOMM\tCOVERED\tLIBRARIES / REASONS")
	for _, p := range cov.Processes {
		var what []string
		for _, l := range p.Libraries {
			what = append(what, fmt.Sprintf("%s (%s %s)", l.Path, l.Kind, l.Version))
		}
		for _, f := range p.Uncovered {
			what = append(what, fmt.Sprintf("NOT %s: %s", f.Path, f.Reason))
		}
		fmt.Fprintf(tw, "%d\t%s\t%v\t%s\n", p.PID, p.Comm, p.Covered, strings.Join(what, "; "))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	st := cov.Stats
	_, err = fmt.Fprintf(stdout, "files probed %d, processes covered %d, not covered (no symbols) %d, inspect failed %d, attach failed %d, limit reached %d\n",
		st.Files, st.Processes, st.NoSymbols, st.InspectFailed, st.AttachFailed, st.LimitReached)
	return err
}
