package tlstrack

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Bounds on reading /proc/PID/maps.
const (
	// maxMapsBytes bounds the bytes of one maps file read; mappings past
	// it are not seen (counted MapsTruncated).
	maxMapsBytes = 8 << 20
	// maxMapsLine bounds one line (the path is at most PATH_MAX); longer
	// lines are skipped.
	maxMapsLine = 8 << 10
	// maxCandidates bounds the TLS files taken from one process.
	maxCandidates = 16
)

// fileID identifies a file: device (as stat's st_dev encodes it) and inode.
type fileID struct{ dev, ino uint64 }

// mapping is one file mapping of interest in a process.
type mapping struct {
	rng     string // "start-end" as printed, the name under /proc/PID/map_files
	id      fileID
	path    string // as the process sees it, without " (deleted)"
	deleted bool
}

// readMaps reads /proc/PID/maps at path (at most limit bytes) and returns
// the distinct files whose path keep accepts, in order of first mapping.
func readMaps(path string, limit int64, keep func(path string) bool) ([]mapping, bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	defer f.Close()
	return parseMaps(f, limit, keep)
}

// parseMaps parses maps text from r, reading at most limit bytes
// (truncated reports that more was there). Malformed lines are skipped.
func parseMaps(r io.Reader, limit int64, keep func(path string) bool) (out []mapping, truncated bool, err error) {
	lr := &io.LimitedReader{R: r, N: limit + 1}
	br := bufio.NewReaderSize(lr, maxMapsLine)
	seen := make(map[fileID]bool)
	var read int64
	for {
		line, err := br.ReadSlice('\n')
		read += int64(len(line))
		if errors.Is(err, bufio.ErrBufferFull) {
			// Too long: skip to the end of the line.
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = br.ReadSlice('\n')
				read += int64(len(line))
			}
			if err == nil {
				continue
			}
			line = nil
		}
		if read > limit {
			return out, true, nil
		}
		if len(line) > 0 {
			if m, ok := parseMapsLine(line); ok && !seen[m.id] && keep(m.path) {
				if len(out) >= maxCandidates {
					return out, true, nil
				}
				seen[m.id] = true
				out = append(out, m)
			}
		}
		if errors.Is(err, io.EOF) {
			return out, false, nil
		}
		if err != nil {
			return out, false, fmt.Errorf("read maps: %w", err)
		}
	}
}

// parseMapsLine parses "start-end perms offset major:minor inode path".
// Only file mappings (inode non-zero, absolute path) are returned.
func parseMapsLine(line []byte) (mapping, bool) {
	line = bytes.TrimRight(line, "\n")
	var f [5][]byte
	rest := line
	for i := range f {
		rest = bytes.TrimLeft(rest, " ")
		j := bytes.IndexByte(rest, ' ')
		if j < 0 {
			return mapping{}, false
		}
		f[i], rest = rest[:j], rest[j:]
	}
	path := bytes.TrimLeft(rest, " ")
	if len(path) == 0 || path[0] != '/' {
		return mapping{}, false
	}
	start, end, ok := bytes.Cut(f[0], []byte("-"))
	if !ok || !isHex(start) || !isHex(end) {
		return mapping{}, false
	}
	maj, min, ok := bytes.Cut(f[3], []byte(":"))
	if !ok {
		return mapping{}, false
	}
	major, err1 := strconv.ParseUint(string(maj), 16, 32)
	minor, err2 := strconv.ParseUint(string(min), 16, 32)
	ino, err3 := strconv.ParseUint(string(f[4]), 10, 64)
	if err1 != nil || err2 != nil || err3 != nil || ino == 0 {
		return mapping{}, false
	}
	m := mapping{rng: string(f[0]), id: fileID{dev: unix.Mkdev(uint32(major), uint32(minor)), ino: ino}}
	if p, ok := bytes.CutSuffix(path, []byte(" (deleted)")); ok {
		path, m.deleted = p, true
	}
	m.path = string(path)
	return m, true
}

func isHex(b []byte) bool {
	if len(b) == 0 || len(b) > 16 {
		return false
	}
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
