package afpacket

import (
	"testing"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

func TestBuildFilter(t *testing.T) {
	for _, tcpUDP := range []bool{false, true} {
		f, err := buildFilter(300, tcpUDP)
		if err != nil {
			t.Fatalf("buildFilter(%v): %v", tcpUDP, err)
		}
		last := f[len(f)-1]
		if last.Code != unix.BPF_RET|unix.BPF_K || last.K != 300 {
			t.Errorf("last instruction %+v, want ret #300", last)
		}
		for i, ins := range f {
			if ins.Code&0x07 == unix.BPF_JMP && i+1+int(ins.Jt) >= len(f) {
				t.Errorf("instruction %d jumps past the end", i)
			}
		}
	}
}

func TestResolveBadJump(t *testing.T) {
	tests := [][]step{
		{{ins: bpf.JumpIf{}, to: "missing"}, {ins: bpf.RetA{}}},
		{{label: "back", ins: bpf.RetA{}}, {ins: bpf.JumpIf{}, to: "back"}},
	}
	for i, steps := range tests {
		if _, err := resolve(steps); err == nil {
			t.Errorf("case %d: no error", i)
		}
	}
}
