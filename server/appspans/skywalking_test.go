package appspans

import (
	"context"
	"fmt"
	"net/http"
	"testing"
)

// skyWalkingBody is a SkyWalking v3 SegmentObject array in protobuf-JSON
// form (as the Java agent's HTTP reporter sends it): an HTTP entry span
// called from another segment, a MySQL exit, a local span and a failing
// Kafka producer; the second segment has no trace id and is skipped.
const skyWalkingBody = `[{
  "traceId": "a12ff60b-5807-463b-a1f8-fb1c8608219e",
  "traceSegmentId": "seg-b",
  "service": "orders",
  "serviceInstance": "orders-1",
  "spans": [
    {"spanId": 0, "parentSpanId": -1, "startTime": "1772366400000", "endTime": "1772366400020",
     "refs": [{"refType": "CrossProcess", "traceId": "a12ff60b-5807-463b-a1f8-fb1c8608219e",
               "parentTraceSegmentId": "seg-a", "parentSpanId": 2, "parentService": "gateway"}],
     "operationName": "/orders/{id}", "spanType": "Entry", "spanLayer": "Http", "componentId": 14,
     "tags": [{"key": "http.method", "value": "GET"}, {"key": "url", "value": "http://orders:8080/orders/7"},
              {"key": "status_code", "value": "200"}]},
    {"spanId": 1, "parentSpanId": 0, "startTime": 1772366400002, "endTime": 1772366400007,
     "operationName": "Mysql/JDBC/PreparedStatement/executeQuery", "peer": "10.0.0.8:3306",
     "spanType": "Exit", "spanLayer": "Database", "componentId": 33,
     "tags": [{"key": "db.type", "value": "sql"}, {"key": "db.instance", "value": "shop"},
              {"key": "db.statement", "value": "SELECT * FROM orders WHERE id = ?"}]},
    {"spanId": 2, "parentSpanId": 0, "startTime": 1772366400008, "endTime": 1772366400009,
     "operationName": "render", "spanType": 2, "spanLayer": 0},
    {"spanId": 3, "parentSpanId": 0, "startTime": 1772366400010, "endTime": 1772366400015, "isError": true,
     "operationName": "Kafka/events/Producer", "peer": "kafka:9092", "spanType": "Exit", "spanLayer": "MQ",
     "componentId": 40, "tags": [{"key": "mq.topic", "value": "events"}, {"key": "mq.broker", "value": "kafka:9092"}]}
  ]
}, {"traceSegmentId": "seg-x", "service": "bad", "spans": [{"spanId": 0, "parentSpanId": -1}]}]`

func TestSkyWalkingIntoStore(t *testing.T) {
	s := openStore(t)
	r := New(s.InsertL7, Options{})
	code, _, out := post(t, startHTTP(t, r)+PathSkyWalkingSegments, "application/json", "", []byte(skyWalkingBody))
	if code != http.StatusOK {
		t.Fatalf("status %d: %s", code, out)
	}
	res, err := s.Query(context.Background(), `SELECT trace_id, span_id, parent_span_id, observation_point, l7_protocol,
		request_type, request_domain, request_resource, endpoint, response_code, response_status, response_duration,
		process_kname_0, process_kname_1, ip_1, server_port, attributes['service.instance.id']
		FROM l7_flow_log ORDER BY span_id`)
	if err != nil {
		t.Fatal(err)
	}
	const tr = "a12ff60b-5807-463b-a1f8-fb1c8608219e"
	want := []string{
		"[" + tr + " seg-b-0 seg-a-2 s-app 20 GET orders:8080 /orders/7 /orders/{id} 200 0 20000  orders  0 orders-1]",
		"[" + tr + " seg-b-1 seg-b-0 c-app 60 SELECT shop SELECT * FROM orders WHERE id = ? Mysql/JDBC/PreparedStatement/executeQuery <nil> 0 5000 orders  10.0.0.8 3306 orders-1]",
		"[" + tr + " seg-b-2 seg-b-0 app 0 render   render <nil> 0 1000 orders   0 orders-1]",
		"[" + tr + " seg-b-3 seg-b-0 c-app 100  kafka:9092 events events <nil> 3 5000 orders   9092 orders-1]",
	}
	if len(res.Rows) != len(want) {
		t.Fatalf("%d rows: %v", len(res.Rows), res.Rows)
	}
	for i, row := range res.Rows {
		if got := fmt.Sprint(row); got != want[i] {
			t.Errorf("row %d\n got %s\nwant %s", i, got, want[i])
		}
	}
	if st := r.Stats(); st != (Stats{Received: 5, Converted: 4, Rejected: 1}) {
		t.Errorf("stats %+v", st)
	}
}

func TestSkyWalkingBadInput(t *testing.T) {
	tests := []struct {
		name, body string
		wantErr    bool
		rows       int
	}{
		{"single segment", `{"traceId":"t","traceSegmentId":"s","service":"x","spans":[{"spanId":0,"parentSpanId":-1,"spanType":"Local"}]}`, false, 1},
		{"empty array", `[]`, false, 0},
		{"not json", `hello`, true, 0},
		{"bad int", `[{"traceId":"t","traceSegmentId":"s","spans":[{"spanId":"x"}]}]`, true, 0},
		{"bad enum", `[{"traceId":"t","traceSegmentId":"s","spans":[{"spanType":{}}]}]`, true, 0},
		{"truncated", `[{"traceId":"t"`, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rows, err := ConvertSkyWalking([]byte(tc.body))
			if (err != nil) != tc.wantErr || len(rows) != tc.rows {
				t.Errorf("rows=%d err=%v, want rows=%d err=%v", len(rows), err, tc.rows, tc.wantErr)
			}
		})
	}
}
