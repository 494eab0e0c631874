package mqtt

import (
	"strconv"

	"github.com/sightline-io/sightline/agent/l7"
)

// AttrPacketID is a QoS 1 or 2 PUBLISH's packet id as sent (the
// RequestID column offsets the broker's by serverIDs).
const AttrPacketID = "mqtt.packet_id"

// propUser is the MQTT 5 User Property identifier (a UTF-8 string pair).
const propUser = 0x26

// publishProps reads an MQTT 5 PUBLISH's property block (the captured part
// of it) and sets m's trace context from a "traceparent" user property. It
// stops at the first property it cannot size.
func publishProps(m *l7.Message, r *reader) {
	if r.failed() {
		return
	}
	n, k, ok := remainingLength(r.b[r.off:])
	if !ok || k == 0 {
		return
	}
	start := r.off + k
	pr := reader{b: r.b[start:min(start+n, len(r.b))]}
	for !pr.failed() && pr.off < len(pr.b) {
		id := pr.u8() // every PUBLISH property id fits one varint byte
		switch id {
		case 0x01: // payload format indicator
			pr.skip(1)
		case 0x02: // message expiry interval
			pr.skip(4)
		case 0x23: // topic alias
			pr.skip(2)
		case 0x03, 0x08, 0x09: // content type, response topic, correlation data
			pr.str()
		case 0x0B: // subscription identifier (varint)
			_, k, ok := remainingLength(pr.b[pr.off:])
			if !ok || k == 0 {
				return
			}
			pr.skip(k)
		case propUser:
			key, val := pr.str(), pr.str()
			if !pr.failed() && string(key) == "traceparent" && m.SetTraceparent(val) {
				return
			}
		default:
			return
		}
	}
}

// setPacketID records a PUBLISH's packet id as an attribute.
func setPacketID(m *l7.Message, id uint16) {
	if m.Attributes == nil {
		m.Attributes = make(map[string]string, 1)
	}
	m.Attributes[AttrPacketID] = strconv.Itoa(int(id))
}
