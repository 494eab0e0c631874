package wire

import (
	"context"
	"reflect"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/wire/sightlinepb"
)

// FuzzReceiverDecode feeds arbitrary bytes through the path a received call
// takes. It must never panic, and any batch it accepts must survive another
// trip over the wire unchanged.
func FuzzReceiverDecode(f *testing.F) {
	good := realisticRow(3)
	for _, b := range []*sightlinepb.L7Batch{
		{AgentId: "a", Rows: []*sightlinepb.L7FlowLog{ToProto(&good)}},
		{AgentId: "a", Rows: []*sightlinepb.L7FlowLog{{Ip_0: []byte{1, 2, 3}}}},
		{AgentId: "a", Rows: []*sightlinepb.L7FlowLog{{OrgId: 1 << 17, Attributes: map[string]string{"": ""}}}},
	} {
		raw, err := proto.Marshal(b)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(raw)
	}
	recv, err := NewReceiver(func(context.Context, []flowlog.L7FlowLog) error { return nil }, ReceiverOptions{MaxBatchRows: 64})
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var batch sightlinepb.L7Batch
		if proto.Unmarshal(data, &batch) != nil {
			return
		}
		rows, err := recv.decode(&batch)
		if err != nil {
			return
		}
		for i := range rows {
			again, err := FromProto(ToProto(&rows[i]))
			if err != nil {
				t.Fatalf("row %d accepted once, rejected on re-encode: %v", i, err)
			}
			if !reflect.DeepEqual(again, rows[i]) {
				t.Fatalf("row %d changed on re-encode:\n %+v\n %+v", i, rows[i], again)
			}
		}
	})
}
