package tcpevents

// The generated objects are committed so builds need no clang; regenerate with
// `go generate ./agent/capture/tcpevents` (needs clang, libbpf headers).
// bpf/vmlinux.h is bpftool's dump of this x86_64 kernel's BTF; CO-RE relocates
// field offsets at load, so other kernels work, but only amd64 is generated.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -target amd64 -type tcp_event -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I../../../bpf" tcpEvents ../../../bpf/tcp_events.c
