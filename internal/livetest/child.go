package livetest

import (
	"fmt"
	"os"
)

// Child makes a test binary double as a client or server process: when the
// environment variable env is set (a test started the binary again with it,
// since the agent never traces its own process), Child runs run with its
// value and exits: 0 on success, 1 with the error on stderr. Otherwise it
// returns and the tests run. Call it first in TestMain.
func Child(env string, run func(value string) error) {
	v := os.Getenv(env)
	if v == "" {
		return
	}
	if err := run(v); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}
