package mqtt

import (
	"strconv"

	"github.com/sightline-io/sightline/flowlog"
)

// reasonNames names MQTT 5 reason codes (OASIS MQTT 5.0, 2.4). Read-only.
var reasonNames = map[byte]string{
	0x00: "Success", 0x01: "Granted QoS 1", 0x02: "Granted QoS 2", 0x04: "Disconnect with Will Message",
	0x10: "No matching subscribers", 0x11: "No subscription existed", 0x18: "Continue authentication",
	0x19: "Re-authenticate", 0x80: "Unspecified error", 0x81: "Malformed Packet", 0x82: "Protocol Error",
	0x83: "Implementation specific error", 0x84: "Unsupported Protocol Version", 0x85: "Client Identifier not valid",
	0x86: "Bad User Name or Password", 0x87: "Not authorized", 0x88: "Server unavailable", 0x89: "Server busy",
	0x8A: "Banned", 0x8B: "Server shutting down", 0x8C: "Bad authentication method", 0x8D: "Keep Alive timeout",
	0x8E: "Session taken over", 0x8F: "Topic Filter invalid", 0x90: "Topic Name invalid",
	0x91: "Packet Identifier in use", 0x92: "Packet Identifier not found", 0x93: "Receive Maximum exceeded",
	0x94: "Topic Alias invalid", 0x95: "Packet too large", 0x96: "Message rate too high", 0x97: "Quota exceeded",
	0x98: "Administrative action", 0x99: "Payload format invalid", 0x9A: "Retain not supported",
	0x9B: "QoS not supported", 0x9C: "Use another server", 0x9D: "Server moved",
	0x9E: "Shared Subscriptions not supported", 0x9F: "Connection rate exceeded", 0xA0: "Maximum connect time",
	0xA1: "Subscription Identifiers not supported", 0xA2: "Wildcard Subscriptions not supported",
}

// connackV3Names names the MQTT 3.1/3.1.1 CONNACK return codes. Read-only.
var connackV3Names = [...]string{
	"Connection Accepted", "unacceptable protocol version", "identifier rejected",
	"server unavailable", "bad user name or password", "not authorized",
}

// codeName returns the text of a return/reason code for the Exception column.
func codeName(code byte, v5, connack bool) string {
	if !v5 && connack {
		if int(code) < len(connackV3Names) {
			return connackV3Names[code]
		}
	} else if !v5 && code == 0x80 {
		return "Failure" // 3.1.1 SUBACK
	} else if s, ok := reasonNames[code]; ok {
		return s
	}
	return "code " + strconv.Itoa(int(code))
}

// codeStatus classes a return/reason code. MQTT 5 codes below 0x80 are
// successes. A SUBACK/UNSUBACK failure (0x80 and up) refuses the client's
// filter: a client error. Other failures are the client's (bad packet, not authorized, bad
// credentials, invalid topic, quota ...) except those that say the server
// cannot serve now or at all: 3.1.1 CONNACK 3 "server unavailable", and
// 0x80 Unspecified error, 0x83 Implementation specific error, 0x88 Server
// unavailable, 0x89 Server busy, 0x8B Server shutting down, 0x9C Use another
// server, 0x9D Server moved.
func codeStatus(code byte, v5, connack, suback bool) flowlog.ResponseStatus {
	if !v5 && connack {
		switch code {
		case 0:
			return flowlog.StatusSuccess
		case 3:
			return flowlog.StatusServerError
		}
		return flowlog.StatusClientError
	}
	if code < 0x80 {
		return flowlog.StatusSuccess
	}
	if suback {
		return flowlog.StatusClientError
	}
	switch code {
	case 0x80, 0x83, 0x88, 0x89, 0x8B, 0x9C, 0x9D:
		return flowlog.StatusServerError
	}
	return flowlog.StatusClientError
}
