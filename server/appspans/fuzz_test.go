package appspans

import (
	"testing"

	"go.opentelemetry.io/collector/pdata/ptrace/ptraceotlp"
)

func FuzzConvertZipkin(f *testing.F) {
	f.Add([]byte(zipkinBody))
	f.Add([]byte(`[{"traceId":"0000000000000001","id":"0000000000000001","timestamp":-5,"duration":9223372036854775807}]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		rows, err := ConvertZipkin(b)
		if err != nil && len(rows) != 0 {
			t.Fatal("rows with an error")
		}
		for _, r := range rows {
			if len(r.Attributes) > MaxAttributes {
				t.Fatal("unbounded attributes")
			}
		}
	})
}

func FuzzConvertSkyWalking(f *testing.F) {
	f.Add([]byte(skyWalkingBody))
	f.Add([]byte(`{"traceId":"t","traceSegmentId":"s","spans":[{"startTime":"99999999999999999","spanLayer":4}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = ConvertSkyWalking(b)
	})
}

func FuzzConvertOTLP(f *testing.F) {
	for _, tid := range []byte{1, 2} {
		b, err := ptraceotlp.NewExportRequestFromTraces(testTraces(tid)).MarshalProto()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		req := ptraceotlp.NewExportRequest()
		if err := req.UnmarshalProto(b); err != nil {
			return
		}
		rows := ConvertTraces(req.Traces())
		if len(rows) != req.Traces().SpanCount() {
			t.Fatalf("%d rows for %d spans", len(rows), req.Traces().SpanCount())
		}
	})
}
