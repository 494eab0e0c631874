package procinfo

import (
	"bufio"
	"io"
	"strings"
)

// Container runtimes recognised from cgroup paths.
const (
	RuntimeDocker     = "docker"
	RuntimeContainerd = "containerd"
	RuntimeCRIO       = "cri-o"
	RuntimePodman     = "podman"
)

// CgroupIdentity is what a process's /proc/<pid>/cgroup says about it.
type CgroupIdentity struct {
	// Path is the cgroup v2 path ("0::" line) when present, else the v1
	// name=systemd path, else the first non-root v1 path.
	Path string
	// ContainerID is the 64-hex container id, empty when the process is not
	// in a recognised container cgroup.
	ContainerID string
	// Runtime is one of the Runtime* constants, or empty when only a bare
	// id was found (cgroupfs driver, e.g. /kubepods/.../<id>).
	Runtime string
	// PodUID is the Kubernetes pod uid (dashed form) when the path has one.
	PodUID string
}

// maxCgroupFile bounds how much of a cgroup file is read; real files are a
// few hundred bytes, v1 systems with many hierarchies a few KiB.
const maxCgroupFile = 64 << 10

// ParseCgroup parses the contents of /proc/<pid>/cgroup. Malformed lines are
// skipped; input beyond 64 KiB is ignored.
func ParseCgroup(r io.Reader) CgroupIdentity {
	var (
		id                      CgroupIdentity
		v2, systemd, firstV1    string
		haveV2, haveSys, haveV1 bool
	)
	sc := bufio.NewScanner(io.LimitReader(r, maxCgroupFile))
	sc.Buffer(make([]byte, 0, 4096), maxCgroupFile)
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path; the path may contain ':'.
		hier, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		controllers, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		switch {
		case hier == "0" && controllers == "":
			v2, haveV2 = path, true
		case controllers == "name=systemd":
			systemd, haveSys = path, true
		case !haveV1 && path != "/":
			firstV1, haveV1 = path, true
		}
		if id.ContainerID == "" {
			id.ContainerID, id.Runtime = containerFromPath(path)
		}
		if id.PodUID == "" {
			id.PodUID = podFromPath(path)
		}
	}
	switch {
	case haveV2:
		id.Path = v2
	case haveSys:
		id.Path = systemd
	case haveV1:
		id.Path = firstV1
	}
	return id
}

// scopePrefixes maps systemd-driver scope name prefixes to runtimes.
// Order matters: longer prefixes that share a start come first.
var scopePrefixes = [...]struct{ prefix, runtime string }{
	{"cri-containerd-", RuntimeContainerd},
	{"containerd-", RuntimeContainerd},
	{"docker-", RuntimeDocker},
	{"crio-", RuntimeCRIO},
	{"libpod-", RuntimePodman},
}

// containerFromPath finds a container id in one cgroup path, scanning from
// the leaf up so that nested cgroups (podman's ".../libpod-<id>.scope/container",
// docker-in-docker) resolve to the innermost container.
func containerFromPath(path string) (id, runtime string) {
	for path != "" {
		var seg string
		if i := strings.LastIndexByte(path, '/'); i >= 0 {
			seg, path = path[i+1:], path[:i]
		} else {
			seg, path = path, ""
		}
		seg = strings.TrimSuffix(seg, ".scope")
		// conmon and other runtime helpers live next to, not inside, the container.
		if strings.HasPrefix(seg, "libpod-conmon-") || strings.HasPrefix(seg, "crio-conmon-") {
			continue
		}
		if isHex64(seg) {
			return seg, runtimeFromParent(path)
		}
		for _, p := range scopePrefixes {
			if rest, ok := strings.CutPrefix(seg, p.prefix); ok && isHex64(rest) {
				return rest, p.runtime
			}
		}
	}
	return "", ""
}

// runtimeFromParent names the runtime for cgroupfs-driver paths where the
// leaf is a bare id, e.g. /docker/<id> or /libpod_parent/<id>.
func runtimeFromParent(parent string) string {
	last := parent[strings.LastIndexByte(parent, '/')+1:]
	switch {
	case last == "docker":
		return RuntimeDocker
	case strings.HasPrefix(last, "libpod"):
		return RuntimePodman
	case strings.HasPrefix(last, "crio"):
		return RuntimeCRIO
	}
	return ""
}

// podFromPath extracts a Kubernetes pod uid from a kubepods cgroup path:
// cgroupfs "/kubepods/burstable/pod<uid>/..." or systemd
// "kubepods-burstable-pod<uid_with_underscores>.slice".
func podFromPath(path string) string {
	if !strings.Contains(path, "kubepods") {
		return ""
	}
	for seg := range strings.SplitSeq(path, "/") {
		seg = strings.TrimSuffix(seg, ".slice")
		i := strings.LastIndex(seg, "pod")
		if i < 0 || (i > 0 && seg[i-1] != '-') {
			continue
		}
		uid := strings.ReplaceAll(seg[i+len("pod"):], "_", "-")
		if isUUID(uid) {
			return uid
		}
	}
	return ""
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isHexDigit(s[i]) {
			return false
		}
	}
	return true
}

// isUUID accepts the 8-4-4-4-12 hex form Kubernetes uses for pod uids.
func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch i {
		case 8, 13, 18, 23:
			if s[i] != '-' {
				return false
			}
		default:
			if !isHexDigit(s[i]) {
				return false
			}
		}
	}
	return true
}

func isHexDigit(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}
