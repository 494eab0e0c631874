// Package cli implements the sightline subcommands. cmd/sightline stays thin.
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// command is one subcommand.
type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"up", "run server and agent for this host in one process", runUp},
		{"agent", "run the eBPF agent and ship to a server", runAgent},
		{"server", "run the server (ingest, store, query API)", runServer},
		{"query", "run SQL against a server's query API", runQuery},
		{"demo", "run the reference topology, drive it and report trace completeness", runDemo},
		{"trace", "assemble a trace around a span or by trace id and print it as a tree", runTrace},
		{"replay", "parse a pcap/pcapng file and print l7_flow_log rows", runReplay},
		{"doctor", "report what this kernel offers and which features work", runDoctor},
		{"version", "print the version", runVersion},
	}
}

// errUsage marks a command-line mistake: exit status 2, message already printed.
var errUsage = errors.New("usage error")

// exitError carries a specific exit status without printing anything more.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// Main runs the command line and returns the process exit status.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err := c.run(ctx, args[1:], stdout, stderr)
		var ee exitError
		switch {
		case err == nil, errors.Is(err, flag.ErrHelp):
			return 0
		case errors.Is(err, errUsage):
			return 2
		case errors.As(err, &ee):
			return ee.code
		default:
			fmt.Fprintf(stderr, "sightline %s: %v\n", c.name, err)
			return 1
		}
	}
	fmt.Fprintf(stderr, "sightline: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Sightline: zero-code eBPF observability.")
	fmt.Fprintln(w, "\nUsage: sightline <command> [flags]\n\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'sightline <command> --help' for a command's flags.")
}

// newFlagSet makes a FlagSet whose --help prints a usage line and the flags.
func newFlagSet(name, synopsis, summary string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: sightline %s %s\n\n%s\n", name, synopsis, summary)
		var hasFlags bool
		fs.VisitAll(func(*flag.Flag) { hasFlags = true })
		if hasFlags {
			fmt.Fprintln(stderr, "\nFlags:")
			fs.PrintDefaults()
		}
	}
	return fs
}

// parseFlags parses args, mapping errors to errUsage (flag already printed them).
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	return nil
}
