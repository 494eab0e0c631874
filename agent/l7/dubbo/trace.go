package dubbo

import (
	"bytes"
	"encoding/base64"
)

// parseTraceparent returns the trace and parent (span) ids of a W3C
// traceparent "00-<32 hex>-<16 hex>-<2 hex>", or empty strings.
func parseTraceparent(v []byte) (trace, span string) {
	if len(v) < 55 || v[2] != '-' || v[35] != '-' || v[52] != '-' || !isHex(v[3:35]) || !isHex(v[36:52]) {
		return "", ""
	}
	return string(v[3:35]), string(v[36:52])
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

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
