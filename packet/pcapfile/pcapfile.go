// Package pcapfile reads pcap and pcapng capture files (the format is sniffed
// from the magic number) with gopacket's pure-Go pcapgo readers, and reports
// each frame with its full link type.
package pcapfile

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/sightline-io/sightline/packet/decode"
)

// ErrNotCapture means the input is neither pcap nor pcapng.
var ErrNotCapture = errors.New("not a pcap or pcapng file")

// ErrCorrupt means the file's framing broke after its header was read.
var ErrCorrupt = errors.New("corrupt capture file")

// maxSnaplen bounds the per-packet buffer: pcapgo sizes its buffer from the
// header's snaplen, which a hostile file can set to 4 GiB. 256 KiB is
// libpcap's MAXIMUM_SNAPLEN; bigger packets end the read with ErrCorrupt.
const maxSnaplen = 262144

// Frame is one captured frame. Data is valid until the next call to Next.
type Frame struct {
	Data     []byte
	Time     time.Time
	WireLen  int // original length on the wire (>= len(Data))
	LinkType decode.LinkType
}

// Reader reads frames from a pcap or pcapng stream.
type Reader struct {
	pcap     *pcapgo.Reader
	ng       *pcapgo.NgReader
	linkType decode.LinkType // pcap: from the file header
	format   string
}

// Magic numbers, as read little-endian from the first four bytes.
const (
	magicMicros      = 0xa1b2c3d4
	magicNanos       = 0xa1b23c4d
	magicMicrosSwap  = 0xd4c3b2a1
	magicNanosSwap   = 0x4d3cb2a1
	magicNgSection   = 0x0a0d0d0a
	magicGzipLE16    = 0x8b1f
	pcapHeaderLength = 24
)

// NewReader sniffs r's format and reads its file header.
func NewReader(r io.Reader) (rd *Reader, err error) {
	defer recoverCorrupt(&err)
	br := bufio.NewReaderSize(r, 1<<16)
	head, err := br.Peek(pcapHeaderLength)
	if err != nil && len(head) < 4 {
		return nil, fmt.Errorf("%w: file too short (%d bytes)", ErrNotCapture, len(head))
	}
	magic := binary.LittleEndian.Uint32(head[:4])
	switch {
	case magic == magicNgSection:
		ng, err := pcapgo.NewNgReader(br, pcapgo.NgReaderOptions{WantMixedLinkType: true, SkipUnknownVersion: true})
		if err != nil {
			return nil, fmt.Errorf("pcapng header: %w: %v", ErrNotCapture, err)
		}
		return &Reader{ng: ng, format: "pcapng"}, nil
	case magic == magicMicros || magic == magicNanos || magic == magicMicrosSwap || magic == magicNanosSwap:
		if len(head) < pcapHeaderLength {
			return nil, fmt.Errorf("%w: truncated pcap header", ErrNotCapture)
		}
		var order binary.ByteOrder = binary.LittleEndian
		if magic == magicMicrosSwap || magic == magicNanosSwap {
			order = binary.BigEndian
		}
		// The low 16 bits are the LINKTYPE; upper bits carry FCS info.
		lt := decode.LinkType(order.Uint32(head[20:24]) & 0xffff)
		pr, err := pcapgo.NewReader(br)
		if err != nil {
			return nil, fmt.Errorf("pcap header: %w: %v", ErrNotCapture, err)
		}
		// Writers often exceed (or zero) their declared snaplen; readers
		// such as tcpdump ignore it, so read up to a fixed bound instead.
		pr.SetSnaplen(maxSnaplen)
		return &Reader{pcap: pr, linkType: lt, format: "pcap"}, nil
	case magic&0xffff == magicGzipLE16:
		pr, err := pcapgo.NewReader(br) // pcapgo inflates gzipped pcap
		if err != nil {
			return nil, fmt.Errorf("gzip: %w: %v", ErrNotCapture, err)
		}
		pr.SetSnaplen(maxSnaplen)
		return &Reader{pcap: pr, linkType: decode.LinkType(pr.LinkType()), format: "pcap.gz"}, nil
	}
	return nil, fmt.Errorf("%w: unknown magic %#08x", ErrNotCapture, magic)
}

// Format returns "pcap", "pcapng" or "pcap.gz".
func (r *Reader) Format() string { return r.format }

// Next returns the next frame, io.EOF at a clean end of file,
// io.ErrUnexpectedEOF when the file ends inside a record, or an error
// wrapping ErrCorrupt when the framing is broken.
func (r *Reader) Next() (f Frame, err error) {
	defer recoverCorrupt(&err)
	if r.ng != nil {
		data, ci, err := r.ng.ZeroCopyReadPacketData()
		if err != nil {
			return Frame{}, readErr(err)
		}
		lt := r.ng.LinkType()
		if len(ci.AncillaryData) > 0 {
			if l, ok := ci.AncillaryData[0].(layers.LinkType); ok {
				lt = l
			}
		}
		return Frame{Data: data, Time: ci.Timestamp, WireLen: max(ci.Length, len(data)), LinkType: ngLinkType(lt)}, nil
	}
	data, ci, err := r.pcap.ZeroCopyReadPacketData()
	if err != nil {
		return Frame{}, readErr(err)
	}
	return Frame{Data: data, Time: ci.Timestamp, WireLen: max(ci.Length, len(data)), LinkType: r.linkType}, nil
}

// ngLinkType undoes pcapgo's truncation of pcapng link types to 8 bits.
// Only LINKTYPE_LINUX_SLL2 (276) is both common and above 255; its low byte,
// 20, is not an assigned link type.
func ngLinkType(lt layers.LinkType) decode.LinkType {
	if lt == layers.LinkType(decode.LinkTypeLinuxSLL2&0xff) {
		return decode.LinkTypeLinuxSLL2
	}
	return decode.LinkType(lt)
}

func readErr(err error) error {
	switch {
	case errors.Is(err, io.EOF):
		return io.EOF
	case errors.Is(err, io.ErrUnexpectedEOF):
		return io.ErrUnexpectedEOF
	}
	return fmt.Errorf("%w: %v", ErrCorrupt, err)
}

// recoverCorrupt turns a panic inside pcapgo (it indexes some hostile
// pcapng option and block lengths unchecked) into ErrCorrupt.
func recoverCorrupt(err *error) {
	if r := recover(); r != nil {
		*err = fmt.Errorf("%w: reader panic: %v", ErrCorrupt, r)
	}
}

// File is a Reader over an open file.
type File struct {
	*Reader
	f *os.File
}

// Open opens a capture file.
func Open(path string) (*File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("open capture: %w", err)
	}
	r, err := NewReader(f)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &File{Reader: r, f: f}, nil
}

// Close closes the file.
func (f *File) Close() error { return f.f.Close() }
