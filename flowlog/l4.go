package flowlog

import (
	"net/netip"
	"time"
)

// CloseType is the l4_flow_log close_type enum (DeepFlow-compatible values):
// how, or whether, a flow ended in the period a row reports.
type CloseType uint8

const (
	CloseOthers                  CloseType = 0
	CloseNormal                  CloseType = 1  // FIN both ways
	CloseTransferServerRST       CloseType = 2  // server reset an established flow
	CloseTransferTimeout         CloseType = 3  // no packet for the flow timeout
	CloseForceReport             CloseType = 5  // periodic report of a live flow
	CloseEstServerSYNMiss        CloseType = 7  // client SYNs unanswered (or retransmitted)
	CloseServerHalfClose         CloseType = 8  // server sent FIN, client never did
	CloseTransferClientRST       CloseType = 9  // client reset an established flow
	CloseEstClientACKMiss        CloseType = 10 // SYN-ACK sent, client's ACK never came
	CloseClientHalfClose         CloseType = 11 // client sent FIN, server never did
	CloseEstClientPortReuse      CloseType = 13 // a new SYN on a tuple still in use
	CloseEstServerDirectRST      CloseType = 15 // server answered the SYN with RST (closed port)
	CloseTransferServerQueueLack CloseType = 17 // server's accept queue full (SYN-ACK retransmits, then RST/no ACK)
	CloseEstClientOtherRST       CloseType = 18 // client reset during the handshake
	CloseEstServerOtherRST       CloseType = 19 // server reset during the handshake after SYN-ACK
	CloseNormalClientRST         CloseType = 20 // client RST after a normal exchange of FINs or data
)

var closeTypeNames = map[CloseType]string{
	CloseOthers: "Others", CloseNormal: "Normal", CloseTransferServerRST: "Transfer Server RST",
	CloseTransferTimeout: "Transfer Timeout", CloseForceReport: "Force Report",
	CloseEstServerSYNMiss: "Est. Server SYN Miss", CloseServerHalfClose: "Close Server Half Close",
	CloseTransferClientRST: "Transfer Client RST", CloseEstClientACKMiss: "Est. Client ACK Miss",
	CloseClientHalfClose: "Close Client Half Close", CloseEstClientPortReuse: "Est. Client Port Reuse",
	CloseEstServerDirectRST: "Est. Server Direct RST", CloseTransferServerQueueLack: "Transfer Server Queue Overflow",
	CloseEstClientOtherRST: "Est. Client Other RST", CloseEstServerOtherRST: "Est. Server Other RST",
	CloseNormalClientRST: "Normal Client RST",
}

func (c CloseType) String() string {
	if s, ok := closeTypeNames[c]; ok {
		return s
	}
	return "Others"
}

// CloseTypeNames returns a copy of the enum's display names.
func CloseTypeNames() map[CloseType]string {
	m := make(map[CloseType]string, len(closeTypeNames))
	for k, v := range closeTypeNames {
		m[k] = v
	}
	return m
}

// L4FlowLog is one l4_flow_log row: one TCP or UDP flow over one reporting
// period (default 60 s) or up to its close. The client (_0, "tx") is the side
// that sent the SYN, or the first packet seen for UDP and for flows met
// mid-stream. Times in microseconds where the contract says µs.
type L4FlowLog struct {
	ID        uint64    `json:"_id"`
	Time      time.Time `json:"time"`       // end of the period
	StartTime time.Time `json:"start_time"` // first packet of the flow
	EndTime   time.Time `json:"end_time"`   // last packet in the period
	Duration  uint64    `json:"duration"`   // end_time - start_time, µs

	AgentID string `json:"agent_id"`
	Host    string `json:"host"`
	OrgID   uint16 `json:"org_id"`
	TeamID  uint16 `json:"team_id"`

	SignalSource     SignalSource `json:"signal_source"`
	ObservationPoint string       `json:"observation_point"`

	IP0        netip.Addr `json:"ip_0"`
	IP1        netip.Addr `json:"ip_1"`
	ClientPort uint16     `json:"client_port"`
	ServerPort uint16     `json:"server_port"`
	Protocol   uint8      `json:"protocol"` // 6 TCP, 17 UDP

	L7Protocol L7Protocol `json:"l7_protocol"`

	// Counters of this period; tx is client → server.
	ByteTx   uint64 `json:"byte_tx"`
	ByteRx   uint64 `json:"byte_rx"`
	PacketTx uint64 `json:"packet_tx"`
	PacketRx uint64 `json:"packet_rx"`

	// Handshake round trip (µs): rtt = rtt_client + rtt_server as seen at the
	// observation point (SYN → SYN-ACK is the server half, SYN-ACK → ACK the
	// client half). 0 when the handshake was not seen.
	RTT       uint32 `json:"rtt"`
	RTTClient uint32 `json:"rtt_client"`
	RTTServer uint32 `json:"rtt_server"`

	// SRT: data → its ACK from the server (TCP-level server response time).
	SRTSum   uint64 `json:"srt_sum"`
	SRTCount uint32 `json:"srt_count"`
	SRTMax   uint32 `json:"srt_max"`
	// ART: client data → server data (application response time at L4).
	ARTSum   uint64 `json:"art_sum"`
	ARTCount uint32 `json:"art_count"`
	ARTMax   uint32 `json:"art_max"`

	RetransTx  uint32 `json:"retrans_tx"`
	RetransRx  uint32 `json:"retrans_rx"`
	ZeroWinTx  uint32 `json:"zero_win_tx"`
	ZeroWinRx  uint32 `json:"zero_win_rx"`
	OutOfOrder uint32 `json:"out_of_order"` // added column: segments seen ahead of a gap

	SYNCount      uint32 `json:"syn_count"`
	SYNACKCount   uint32 `json:"synack_count"`
	RetransSYN    uint32 `json:"retrans_syn"`
	RetransSYNACK uint32 `json:"retrans_synack"`
	FINCount      uint32 `json:"fin_count"`
	RSTCount      uint32 `json:"rst_count"` // added column

	CloseType CloseType `json:"close_type"`
	// IsNewFlow is true in the flow's first row; IsClosed in its last.
	IsNewFlow bool `json:"is_new_flow"`
	IsClosed  bool `json:"is_closed"`

	ProcessID0    uint32 `json:"process_id_0"`
	ProcessID1    uint32 `json:"process_id_1"`
	ProcessKName0 string `json:"process_kname_0"`
	ProcessKName1 string `json:"process_kname_1"`
}
