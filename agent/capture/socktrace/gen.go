package socktrace

// The generated objects are committed so builds need no clang; regenerate with
// `go generate ./agent/capture/socktrace` (needs clang, libbpf headers).
// bpf/vmlinux.h is bpftool's dump of this x86_64 kernel's BTF; CO-RE relocates
// field offsets at load, so other kernels work, but only amd64 is generated.
//go:generate go run github.com/cilium/ebpf/cmd/bpf2go -cc clang -target amd64 -type event_header -type sock_state -cflags "-O2 -g -Wall -Werror -mcpu=v3 -I../../../bpf" socketTrace ../../../bpf/socket_trace.c
