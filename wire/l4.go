package wire

import (
	"context"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/wire/sightlinepb"
)

// L4 rows are few (one per flow per minute) next to L7 rows, so they travel
// through the generated protobuf code and a small queue of their own rather
// than the L7 path's hand-written encoder and chunked queue.

// L4ToProto converts an l4_flow_log row to its wire form.
func L4ToProto(r *flowlog.L4FlowLog) *sightlinepb.L4FlowLog {
	return &sightlinepb.L4FlowLog{
		Id: r.ID, TimeUs: timeToMicros(r.Time), StartTimeUs: timeToMicros(r.StartTime), EndTimeUs: timeToMicros(r.EndTime),
		Duration: r.Duration, AgentId: r.AgentID, Host: r.Host, OrgId: uint32(r.OrgID), TeamId: uint32(r.TeamID),
		SignalSource: uint32(r.SignalSource), ObservationPoint: r.ObservationPoint,
		Ip_0: addrToBytes(r.IP0), Ip_1: addrToBytes(r.IP1), ClientPort: uint32(r.ClientPort), ServerPort: uint32(r.ServerPort),
		Protocol: uint32(r.Protocol), L7Protocol: uint32(r.L7Protocol),
		ByteTx: r.ByteTx, ByteRx: r.ByteRx, PacketTx: r.PacketTx, PacketRx: r.PacketRx,
		Rtt: r.RTT, RttClient: r.RTTClient, RttServer: r.RTTServer,
		SrtSum: r.SRTSum, SrtCount: r.SRTCount, SrtMax: r.SRTMax, ArtSum: r.ARTSum, ArtCount: r.ARTCount, ArtMax: r.ARTMax,
		RetransTx: r.RetransTx, RetransRx: r.RetransRx, ZeroWinTx: r.ZeroWinTx, ZeroWinRx: r.ZeroWinRx, OutOfOrder: r.OutOfOrder,
		SynCount: r.SYNCount, SynackCount: r.SYNACKCount, RetransSyn: r.RetransSYN, RetransSynack: r.RetransSYNACK,
		FinCount: r.FINCount, RstCount: r.RSTCount, CloseType: uint32(r.CloseType), IsNewFlow: r.IsNewFlow, IsClosed: r.IsClosed,
		ProcessId_0: r.ProcessID0, ProcessId_1: r.ProcessID1,
		ProcessKname_0: validUTF8(r.ProcessKName0), ProcessKname_1: validUTF8(r.ProcessKName1),
	}
}

// L4FromProto converts a wire row back, rejecting values out of range.
func L4FromProto(p *sightlinepb.L4FlowLog) (flowlog.L4FlowLog, error) {
	var e fieldErrors
	r := flowlog.L4FlowLog{
		ID: p.GetId(), Time: microsToTime(p.GetTimeUs()), StartTime: microsToTime(p.GetStartTimeUs()),
		EndTime: microsToTime(p.GetEndTimeUs()), Duration: p.GetDuration(),
		AgentID: validUTF8(p.GetAgentId()), Host: validUTF8(p.GetHost()),
		OrgID: e.u16("org_id", p.GetOrgId()), TeamID: e.u16("team_id", p.GetTeamId()),
		SignalSource: flowlog.SignalSource(e.u8("signal_source", p.GetSignalSource())), ObservationPoint: validUTF8(p.GetObservationPoint()),
		IP0: e.addr("ip_0", p.GetIp_0()), IP1: e.addr("ip_1", p.GetIp_1()),
		ClientPort: e.u16("client_port", p.GetClientPort()), ServerPort: e.u16("server_port", p.GetServerPort()),
		Protocol: e.u8("protocol", p.GetProtocol()), L7Protocol: flowlog.L7Protocol(e.u8("l7_protocol", p.GetL7Protocol())),
		ByteTx: p.GetByteTx(), ByteRx: p.GetByteRx(), PacketTx: p.GetPacketTx(), PacketRx: p.GetPacketRx(),
		RTT: p.GetRtt(), RTTClient: p.GetRttClient(), RTTServer: p.GetRttServer(),
		SRTSum: p.GetSrtSum(), SRTCount: p.GetSrtCount(), SRTMax: p.GetSrtMax(),
		ARTSum: p.GetArtSum(), ARTCount: p.GetArtCount(), ARTMax: p.GetArtMax(),
		RetransTx: p.GetRetransTx(), RetransRx: p.GetRetransRx(), ZeroWinTx: p.GetZeroWinTx(), ZeroWinRx: p.GetZeroWinRx(),
		OutOfOrder: p.GetOutOfOrder(), SYNCount: p.GetSynCount(), SYNACKCount: p.GetSynackCount(),
		RetransSYN: p.GetRetransSyn(), RetransSYNACK: p.GetRetransSynack(), FINCount: p.GetFinCount(), RSTCount: p.GetRstCount(),
		CloseType: flowlog.CloseType(e.u8("close_type", p.GetCloseType())), IsNewFlow: p.GetIsNewFlow(), IsClosed: p.GetIsClosed(),
		ProcessID0: p.GetProcessId_0(), ProcessID1: p.GetProcessId_1(),
		ProcessKName0: validUTF8(p.GetProcessKname_0()), ProcessKName1: validUTF8(p.GetProcessKname_1()),
	}
	if e.err != nil {
		return flowlog.L4FlowLog{}, e.err
	}
	return r, nil
}

// L4Sink stores validated l4_flow_log rows (store.Store.InsertL4).
type L4Sink func(ctx context.Context, rows []flowlog.L4FlowLog) error

// PushL4 implements sightlinepb.IngestServer for l4_flow_log rows, with the
// same rules as PushL7: invalid batches are rejected whole.
func (r *Receiver) PushL4(ctx context.Context, batch *sightlinepb.L4Batch) (*sightlinepb.PushReply, error) {
	if r.l4sink == nil {
		return nil, status.Error(codes.Unimplemented, "this server stores no l4_flow_log rows")
	}
	r.l4RowsReceived.Add(uint64(len(batch.GetRows())))
	if batch.GetAgentId() == "" {
		r.batchesRejected.Add(1)
		return nil, status.Error(codes.InvalidArgument, "invalid batch: agent_id is empty")
	}
	if len(batch.GetRows()) > r.opts.MaxBatchRows {
		r.batchesRejected.Add(1)
		return nil, status.Errorf(codes.InvalidArgument, "invalid batch: %d rows exceed the limit of %d per batch", len(batch.GetRows()), r.opts.MaxBatchRows)
	}
	rows := make([]flowlog.L4FlowLog, len(batch.GetRows()))
	for i, p := range batch.GetRows() {
		row, err := L4FromProto(p)
		if err != nil {
			r.batchesRejected.Add(1)
			return nil, status.Errorf(codes.InvalidArgument, "invalid batch: row %d: %v", i, err)
		}
		if row.AgentID == "" {
			row.AgentID = batch.GetAgentId()
		}
		rows[i] = row
	}
	select {
	case r.inserts <- struct{}{}:
	case <-ctx.Done():
		return nil, status.FromContextError(ctx.Err()).Err()
	}
	err := r.l4sink(ctx, rows)
	<-r.inserts
	if err != nil {
		r.insertErrors.Add(1)
		return nil, status.Errorf(codes.Internal, "insert %d l4 rows: %v", len(rows), err)
	}
	r.l4RowsInserted.Add(uint64(len(rows)))
	return &sightlinepb.PushReply{Accepted: uint64(len(rows))}, nil
}

// SetL4Sink makes the receiver accept l4_flow_log rows.
func (r *Receiver) SetL4Sink(sink L4Sink) { r.l4sink = sink }

// l4Queue holds l4_flow_log rows for the shipper.
const defaultL4QueueSize = 16384

// EnqueueL4 queues l4_flow_log rows; rows beyond the queue's bound are
// dropped and counted. Never blocks.
func (s *Shipper) EnqueueL4(rows ...flowlog.L4FlowLog) {
	s.l4mu.Lock()
	defer s.l4mu.Unlock()
	for _, r := range rows {
		if s.closed || len(s.l4queue) >= defaultL4QueueSize {
			s.l4Dropped.Add(1)
			continue
		}
		s.l4queue = append(s.l4queue, r)
	}
}

// shipL4 sends the queued l4 rows in batches; a batch that fails is retried
// once after a short pause, then dropped and counted.
func (s *Shipper) shipL4(ctx context.Context) {
	s.l4mu.Lock()
	rows := s.l4queue
	s.l4queue = nil
	s.l4mu.Unlock()
	client := sightlinepb.NewIngestClient(s.conn)
	for len(rows) > 0 {
		n := min(len(rows), s.opts.BatchSize)
		batch := &sightlinepb.L4Batch{AgentId: s.opts.AgentID, Rows: make([]*sightlinepb.L4FlowLog, n)}
		for i := range n {
			batch.Rows[i] = L4ToProto(&rows[i])
		}
		var err error
		for attempt := 0; attempt < 2; attempt++ {
			cctx, cancel := context.WithTimeout(ctx, s.opts.SendTimeout)
			_, err = client.PushL4(cctx, batch)
			cancel()
			if err == nil || status.Code(err) == codes.InvalidArgument || ctx.Err() != nil {
				break
			}
			select {
			case <-time.After(s.opts.RetryMinBackoff):
			case <-ctx.Done():
			}
		}
		if err != nil {
			s.l4Dropped.Add(uint64(n))
			s.log.Warn("l4 batch dropped", "rows", n, "err", err)
		} else {
			s.l4Sent.Add(uint64(n))
		}
		rows = rows[n:]
	}
}

// L4Stats reports the l4 rows sent and dropped.
func (s *Shipper) L4Stats() (sent, dropped uint64) { return s.l4Sent.Load(), s.l4Dropped.Load() }
