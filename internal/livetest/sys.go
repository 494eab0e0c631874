package livetest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os/exec"
	"syscall"
	"testing"

	"github.com/sightline-io/sightline/flowlog"
)

func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }

func killGroup(cmd *exec.Cmd) {
	if cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
}

// decodeRows reads replay's JSON lines back into rows.
func decodeRows(t testing.TB, b []byte) []flowlog.L7FlowLog {
	t.Helper()
	var rows []flowlog.L7FlowLog
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var r flowlog.L7FlowLog
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("livetest: replay row %q: %v", sc.Text(), err)
		}
		rows = append(rows, r)
	}
	return rows
}
