package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"

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
	fs := newFlagSet("doctor", "[--format text|json]",
		"Probes what this kernel offers (BTF, tracefs, syscall and raw tracepoints, kprobes, fentry, uprobes,\n"+
			"perf events, ring buffer, AF_PACKET, cgroup v2, lockdown) and which Sightline features each enables.\n"+
			"Exits 1 when socket capture cannot work, naming the reason.", stderr)
	format := fs.String("format", "text", "output format: text or json")
	if err := parseFlags(fs, args); err != nil {
		return err
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
