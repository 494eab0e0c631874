package dubbo

import (
	"bytes"
	"encoding/base64"

	"github.com/sightline-io/sightline/agent/l7/tracectx"
)

// parseTraceparent returns the trace and parent (span) ids of a W3C
// traceparent "00-<32 hex>-<16 hex>-<2 hex>", or empty strings.
func parseTraceparent(v []byte) (trace, span string) {
	t, sp, ok := tracectx.Traceparent(v)
	if !ok {
		return "", ""
	}
	return string(t), string(sp)
}

// parseSW8 returns the trace id and "segment-span" of a SkyWalking sw8 value
// "sample-base64(trace)-base64(segment)-span-...", or empty strings.
func parseSW8(v []byte) (trace, span string) {
	parts := bytes.SplitN(v, []byte{'-'}, 5)
	if len(parts) < 4 {
		return "", ""
	}
	t, err := base64.StdEncoding.DecodeString(string(parts[1]))
	if err != nil {
		return "", ""
	}
	seg, err := base64.StdEncoding.DecodeString(string(parts[2]))
	if err != nil {
		return string(t), ""
	}
	return string(t), string(seg) + "-" + string(parts[3])
}
