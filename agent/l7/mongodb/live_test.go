package mongodb

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/sightline-io/sightline/agent/l7"
	"github.com/sightline-io/sightline/flowlog"
	"github.com/sightline-io/sightline/internal/livetest"
)

func TestMain(m *testing.M) {
	if childMain() {
		return
	}
	os.Exit(m.Run())
}

// mongoWant is one command the driver workload sends and its expected row.
type mongoWant struct {
	cmd, db, coll, endpoint string
	status                  flowlog.ResponseStatus
	code                    int32 // -1: none
	exception               string
	rows                    int64 // -1: none
	oneWay                  bool
}

// driverWants are the rows of drive's workload (server_test.go).
var driverWants = []mongoWant{
	{"ping", "shop", "", "ping", flowlog.StatusSuccess, -1, "", -1, false},
	{"find", "shop", "users", "find users", flowlog.StatusSuccess, -1, "", -1, false},
	{"insert", "shop", "users", "insert users", flowlog.StatusSuccess, -1, "", 1, false},
	{"insert", "shop", "dups", "insert dups", flowlog.StatusClientError, 11000, "DuplicateKey", 0, false},
	{"bogusCommand", "shop", "", "bogusCommand", flowlog.StatusClientError, 59, "CommandNotFound", -1, false},
	{"insert", "shop", "logs", "insert logs", flowlog.StatusSuccess, -1, "", -1, true},
	{"find", "zdb", "zusers", "find zusers", flowlog.StatusSuccess, -1, "", -1, false}, // zlib-compressed
	{"isMaster", "admin", "", "isMaster", flowlog.StatusSuccess, -1, "", -1, false},    // legacy OP_QUERY handshake
}

func TestLiveMongoDB(t *testing.T) {
	a := livetest.StartAgent(t, New(l7.Config{}))
	port := livetest.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	stop := livetest.Record(t, "mongodb.pcap", fmt.Sprintf("tcp port %d", port))
	livetest.StartEnv(t, []string{serverEnv + "=" + addr}, os.Args[0], "-test.run=XXX")
	livetest.WaitTCP(t, addr, 30*time.Second)
	client := livetest.StartEnv(t, []string{clientEnv + "=" + addr}, os.Args[0], "-test.run=XXX")
	if err := client.Cmd.Wait(); err != nil {
		t.Fatalf("driver workload: %v\n%s", err, client.Out)
	}
	for _, w := range driverWants {
		for _, obs := range []string{flowlog.ObsClientProcess, flowlog.ObsServerProcess} {
			rows := a.WaitRows(t, obs+" "+w.endpoint, 1, 20*time.Second, func(r *flowlog.L7FlowLog) bool {
				return int(r.ServerPort) == port && r.ObservationPoint == obs && r.RequestType == w.cmd &&
					r.RequestDomain == w.db && r.RequestResource == w.coll
			})
			checkRow(t, rows[0], w, true)
		}
	}
	stop()
}

func checkRow(t *testing.T, r flowlog.L7FlowLog, w mongoWant, live bool) {
	t.Helper()
	ok := r.L7Protocol == flowlog.L7MongoDB && r.L7ProtocolStr == "MongoDB" && r.Type == flowlog.TypeSession &&
		r.Endpoint == w.endpoint && r.ResponseStatus == w.status && r.ResponseException == w.exception &&
		r.RequestID != nil && *r.RequestID != 0 && r.Protocol == 6 && r.RequestLength > 0
	if w.code < 0 {
		ok = ok && r.ResponseCode == nil
	} else {
		ok = ok && r.ResponseCode != nil && *r.ResponseCode == w.code
	}
	if w.rows < 0 {
		ok = ok && r.SQLAffectedRows == nil
	} else {
		ok = ok && r.SQLAffectedRows != nil && int64(*r.SQLAffectedRows) == w.rows
	}
	if w.oneWay {
		ok = ok && r.ResponseDuration == 0 && r.ResponseLength == -1
	} else {
		ok = ok && r.ResponseLength > 0 && (r.ResponseDuration > 0 || !live)
	}
	if !ok {
		t.Errorf("want %+v, row:\n%s", w, livetest.Describe([]flowlog.L7FlowLog{r}))
	}
}
