// Command sightline is the single Sightline binary: agent, server, both at once
// (up), query client, pcap replay and kernel doctor.
package main

import (
	"os"

	"github.com/sightline-io/sightline/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
