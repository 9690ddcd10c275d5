package durablyhttp

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/durably-go/durably"
)

// The SSE frame encodings: a list stream's projection (H-051) and a run
// stream's full event (H-052), each into a reused buffer as the streams do.
func BenchmarkSSEFrame(b *testing.B) {
	events := map[string]durably.Event{
		"step:complete": {Type: durably.EventStepComplete, Timestamp: time.Now(), Sequence: 42, RunID: "01JBX5V3Q2M8N4K7P9R1S6T0W3",
			JobName: "import-csv", Labels: map[string]string{"organizationId": "org-07", "env": "production"},
			StepName: "parse", StepIndex: 1, Output: json.RawMessage(`{"rows":1200,"file":"s3://bucket/upload.csv"}`), Duration: 12 * time.Millisecond},
		"run:progress": {Type: durably.EventRunProgress, Timestamp: time.Now(), Sequence: 43, RunID: "01JBX5V3Q2M8N4K7P9R1S6T0W3",
			JobName: "import-csv", Labels: map[string]string{"organizationId": "org-07", "env": "production"}},
	}
	for name, e := range events {
		b.Run("projection/"+name, func(b *testing.B) {
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				var ok bool
				if buf, ok = appendProjection(buf[:0], &e); !ok {
					b.Fatal("not projected")
				}
			}
			b.SetBytes(int64(len(buf)))
		})
		b.Run("event/"+name, func(b *testing.B) {
			var buf []byte
			b.ReportAllocs()
			for b.Loop() {
				buf = e.AppendJSON(buf[:0])
			}
			b.SetBytes(int64(len(buf)))
		})
	}
}
