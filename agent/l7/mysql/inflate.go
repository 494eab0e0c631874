package mysql

import (
	"bytes"
	"compress/zlib"
	"io"
)

// maxInflate bounds the bytes decompressed from one compressed packet; the
// rest is treated as uncaptured.
const maxInflate = 64 << 10

// inflater decompresses zlib payloads, reusing its decompressor and buffer.
type inflater struct {
	src bytes.Reader
	r   io.ReadCloser
	out []byte
}

// inflate decompresses up to min(want, maxInflate) bytes of src. A cut
// capture yields what its prefix decodes to, with the error.
func (z *inflater) inflate(src []byte, want int) ([]byte, error) {
	z.src.Reset(src)
	var err error
	if z.r == nil {
		z.r, err = zlib.NewReader(&z.src)
	} else {
		err = z.r.(zlib.Resetter).Reset(&z.src, nil)
	}
	if err != nil {
		return nil, err
	}
	n := min(want, maxInflate)
	if cap(z.out) < n {
		z.out = make([]byte, n)
	}
	out := z.out[:n]
	got, err := io.ReadFull(z.r, out)
	if err == io.ErrUnexpectedEOF || err == io.EOF {
		err = nil
		if got < n {
			err = io.ErrUnexpectedEOF
		}
	}
	return out[:got], err
}
