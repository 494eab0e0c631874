package procinfo

import (
	"strings"
	"testing"
)

const (
	hexA = "d548c5b83fa61d8e3bd86ad42a7ffea9b7c86e3f9d8095c1577d3e1270bb9420"
	hexB = "6de102c1cecc011032305908295668eedad74d736c6d216e4c42f416ae84988f"
)

func TestParseCgroup(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want CgroupIdentity
	}{
		{
			name: "docker cgroupfs v1",
			in:   "12:pids:/docker/" + hexA + "\n1:name=systemd:/docker/" + hexA + "\n",
			want: CgroupIdentity{Path: "/docker/" + hexA, ContainerID: hexA, Runtime: RuntimeDocker},
		},
		{
			name: "docker systemd v2",
			in:   "0::/system.slice/docker-" + hexA + ".scope\n",
			want: CgroupIdentity{Path: "/system.slice/docker-" + hexA + ".scope", ContainerID: hexA, Runtime: RuntimeDocker},
		},
		{
			name: "containerd without cri prefix",
			in:   "0::/system.slice/containerd-" + hexA + ".scope\n",
			want: CgroupIdentity{Path: "/system.slice/containerd-" + hexA + ".scope", ContainerID: hexA, Runtime: RuntimeContainerd},
		},
		{
			name: "kubepods systemd cri-containerd",
			in:   "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_1111_4222_8333_444455556666.slice/cri-containerd-" + hexA + ".scope\n",
			want: CgroupIdentity{
				Path:        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_1111_4222_8333_444455556666.slice/cri-containerd-" + hexA + ".scope",
				ContainerID: hexA, Runtime: RuntimeContainerd, PodUID: "0a1b2c3d-1111-4222-8333-444455556666",
			},
		},
		{
			name: "kubepods guaranteed class has no qos slice",
			in:   "0::/kubepods.slice/kubepods-pod0a1b2c3d_1111_4222_8333_444455556666.slice/crio-" + hexA + ".scope\n",
			want: CgroupIdentity{
				Path:        "/kubepods.slice/kubepods-pod0a1b2c3d_1111_4222_8333_444455556666.slice/crio-" + hexA + ".scope",
				ContainerID: hexA, Runtime: RuntimeCRIO, PodUID: "0a1b2c3d-1111-4222-8333-444455556666",
			},
		},
		{
			name: "kubepods cgroupfs v1",
			in:   "11:memory:/kubepods/burstable/pod12345678-abcd-4ef0-9abc-def012345678/" + hexA + "\n",
			want: CgroupIdentity{Path: "/kubepods/burstable/pod12345678-abcd-4ef0-9abc-def012345678/" + hexA, ContainerID: hexA, PodUID: "12345678-abcd-4ef0-9abc-def012345678"},
		},
		{
			name: "podman rootless nested container cgroup",
			in:   "0::/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + hexA + ".scope/container\n",
			want: CgroupIdentity{Path: "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-" + hexA + ".scope/container", ContainerID: hexA, Runtime: RuntimePodman},
		},
		{
			name: "podman cgroupfs",
			in:   "3:cpu:/libpod_parent/libpod-" + hexA + "\n",
			want: CgroupIdentity{Path: "/libpod_parent/libpod-" + hexA, ContainerID: hexA, Runtime: RuntimePodman},
		},
		{
			name: "conmon is not inside the container",
			in:   "0::/machine.slice/libpod-conmon-" + hexA + ".scope\n",
			want: CgroupIdentity{Path: "/machine.slice/libpod-conmon-" + hexA + ".scope"},
		},
		{
			name: "docker in docker resolves to the innermost id",
			in:   "0::/system.slice/docker-" + hexA + ".scope/docker/" + hexB + "\n",
			want: CgroupIdentity{Path: "/system.slice/docker-" + hexA + ".scope/docker/" + hexB, ContainerID: hexB, Runtime: RuntimeDocker},
		},
		{
			name: "hybrid v1 and v2 prefers the v2 path",
			in:   "4:memory:/process_api/688e09ff2d47bdfed6785a41b0ab00ab\n1:name=systemd:/\n0::/\n",
			want: CgroupIdentity{Path: "/"},
		},
		{
			name: "v1 without systemd uses first non-root path",
			in:   "3:cpuset:/\n4:memory:/process_api/688e\n",
			want: CgroupIdentity{Path: "/process_api/688e"},
		},
		{
			name: "host service",
			in:   "0::/system.slice/ssh.service\n",
			want: CgroupIdentity{Path: "/system.slice/ssh.service"},
		},
		{
			name: "63 hex chars is not an id",
			in:   "0::/docker/" + hexA[:63] + "\n",
			want: CgroupIdentity{Path: "/docker/" + hexA[:63]},
		},
		{
			name: "non-hex 64 chars is not an id",
			in:   "0::/docker-" + strings.Repeat("g", 64) + ".scope\n",
			want: CgroupIdentity{Path: "/docker-" + strings.Repeat("g", 64) + ".scope"},
		},
		{
			name: "pod segment outside kubepods is ignored",
			in:   "0::/pod12345678-abcd-4ef0-9abc-def012345678\n",
			want: CgroupIdentity{Path: "/pod12345678-abcd-4ef0-9abc-def012345678"},
		},
		{
			name: "path relative to the reader's cgroup namespace",
			in:   "0::/../../system.slice/docker-" + hexA + ".scope\n",
			want: CgroupIdentity{Path: "/../../system.slice/docker-" + hexA + ".scope", ContainerID: hexA, Runtime: RuntimeDocker},
		},
		{name: "empty", in: "", want: CgroupIdentity{}},
		{name: "garbage", in: "no colons here\n::\n\x00\xff:\n", want: CgroupIdentity{}},
		{
			name: "path containing a colon",
			in:   "0::/weird:name/docker-" + hexA + ".scope\n",
			want: CgroupIdentity{Path: "/weird:name/docker-" + hexA + ".scope", ContainerID: hexA, Runtime: RuntimeDocker},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ParseCgroup(strings.NewReader(tt.in))
			if got != tt.want {
				t.Errorf("ParseCgroup:\n got %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseCgroupHugeLine(t *testing.T) {
	// A line longer than the read bound must not panic or block; the id on
	// the following line is beyond the bound and not found.
	in := "0::/" + strings.Repeat("a", 2*maxCgroupFile) + "\n12:pids:/docker/" + hexA + "\n"
	got := ParseCgroup(strings.NewReader(in))
	if got.ContainerID != "" {
		t.Errorf("ContainerID = %q, want none past the bound", got.ContainerID)
	}
}

func FuzzParseCgroup(f *testing.F) {
	f.Add("0::/system.slice/docker-" + hexA + ".scope\n")
	f.Add("11:memory:/kubepods/burstable/pod12345678-abcd-4ef0-9abc-def012345678/" + hexA + "\n")
	f.Add("0::/kubepods.slice/kubepods-pod0a1b2c3d_1111_4222_8333_444455556666.slice/crio-" + hexA + ".scope")
	f.Fuzz(func(t *testing.T, in string) {
		id := ParseCgroup(strings.NewReader(in))
		if id.ContainerID != "" && !isHex64(id.ContainerID) {
			t.Errorf("ContainerID %q is not 64 hex", id.ContainerID)
		}
		if id.PodUID != "" && !isUUID(id.PodUID) {
			t.Errorf("PodUID %q is not a uuid", id.PodUID)
		}
	})
}

func BenchmarkParseCgroup(b *testing.B) {
	in := "0::/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod0a1b2c3d_1111_4222_8333_444455556666.slice/cri-containerd-" + hexA + ".scope\n"
	b.ReportAllocs()
	for b.Loop() {
		ParseCgroup(strings.NewReader(in))
	}
}
