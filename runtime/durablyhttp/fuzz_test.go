package durablyhttp_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

type fuzzEnv struct {
	e *durably.Engine
	h http.Handler
}

var (
	fuzzOnce sync.Once
	fuzzRig  *fuzzEnv
)

// fuzzHandler is one engine and handler for a whole fuzzing process: the
// fuzzer calls the target thousands of times.
func fuzzHandler(t testing.TB) *fuzzEnv {
	fuzzOnce.Do(func() {
		dir, err := filepathTemp()
		if err != nil {
			t.Fatal(err)
		}
		st, err := sqlitestore.Open(filepath.Join(dir, "fuzz.db"), sqlitestore.Options{Synchronous: "OFF"})
		if err != nil {
			t.Fatal(err)
		}
		e, err := durably.New(durably.Config{Store: st})
		if err != nil {
			t.Fatal(err)
		}
		durably.MustRegister(e, &durably.Job[msg, msg]{Name: "echo",
			Run: func(ctx context.Context, s *durably.StepContext, in msg) (msg, error) { return in, nil }})
		durably.MustRegister(e, &durably.Job[stepsIn, int]{Name: "steps",
			Run: func(ctx context.Context, s *durably.StepContext, in stepsIn) (int, error) { return in.Count, nil }})
		if err := e.Migrate(context.Background()); err != nil {
			t.Fatal(err)
		}
		h, err := durablyhttp.New(e, durablyhttp.Options[struct{}, durably.MapLabels]{})
		if err != nil {
			t.Fatal(err)
		}
		fuzzRig = &fuzzEnv{e: e, h: h}
	})
	return fuzzRig
}

func countRuns(t testing.TB, e *durably.Engine) int {
	runs, err := e.ListRuns(context.Background(), durably.RunFilter{})
	if err != nil {
		t.Fatal(err)
	}
	return len(runs)
}

// FuzzTriggerBody: whatever the body, POST /trigger answers 200 (and
// creates at most one run) or a 4xx with a JSON error naming the problem
// (and creates nothing); never a 500.
func FuzzTriggerBody(f *testing.F) {
	for _, seed := range []string{
		`{"jobName":"echo","input":{"message":"hi"}}`,
		`{"jobName":"steps","input":{"count":1,"delayMs":0},"labels":{"a":"b"},"concurrencyKey":"k","coalesce":"skip"}`,
		`{"jobName":"echo","input":{"message":"x"},"idempotencyKey":"i"}`,
		`{"jobName":"echo","labels":{"bad key":"v"}}`,
		`{"jobName":"echo","input":null,"coalesce":"merge"}`,
		`{"jobName":5}`, `null`, `[]`, `{`, ``, `{"jobName":"nope"}`,
		`{"jobName":"echo","input":{"message":"\u0000<>&"},"labels":{"k":"\ud800"}}`,
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		rig := fuzzHandler(t)
		before := countRuns(t, rig.e)
		req := httptest.NewRequest("POST", "/trigger", strings.NewReader(body))
		rec := httptest.NewRecorder()
		rig.h.ServeHTTP(rec, req)
		after := countRuns(t, rig.e)
		switch {
		case rec.Code == 200:
			var res struct {
				RunID       string `json:"runId"`
				Disposition string `json:"disposition"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &res); err != nil || res.RunID == "" {
				t.Fatalf("200 with body %q", rec.Body.String())
			}
			if after-before > 1 {
				t.Fatalf("one trigger created %d runs", after-before)
			}
		case rec.Code >= 400 && rec.Code < 500:
			var e struct {
				Error string `json:"error"`
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Fatalf("%d without a JSON error: %q", rec.Code, rec.Body.String())
			}
			if after != before {
				t.Fatalf("a refused trigger (%d %s) wrote %d runs", rec.Code, e.Error, after-before)
			}
		default:
			t.Fatalf("body %q answered %d %s", body, rec.Code, rec.Body.String())
		}
	})
}

// FuzzListQuery: whatever the query string, GET /runs answers a JSON array
// and GET /runs/counts a JSON object, or a 400 with a JSON error; never a
// 500.
func FuzzListQuery(f *testing.F) {
	for _, seed := range []string{
		"", "status=pending&status=leased", "status=", "status=running", "limit=10&offset=5", "limit=-1",
		"limit=10abc", "offset=3", "label.org=a&label.org=b", "label.bad%20key=x", "jobName=&jobName=echo",
		"limit=99999999999999999999", "%zz", "label.=x", "label.a/b.c=d",
		"createdFrom=2026-01-01T00:00:00Z&createdTo=2026-01-02T00:00:00.5Z", "createdFrom=0000-01-01T00:00:00Z",
		"createdTo=9999-12-31T23:59:59.9999Z", "after=2026-01-01T00:00:00Z,01ABC", "after=2026-01-01T00:00:00Z,%00",
		"after=,x", "after=0001-01-01T00:00:00-01:00,a&limit=2",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, query string) {
		rig := fuzzHandler(t)
		for _, path := range []string{"/runs", "/runs/counts"} {
			req := httptest.NewRequest("GET", path, nil)
			req.URL.RawQuery = query
			rec := httptest.NewRecorder()
			rig.h.ServeHTTP(rec, req)
			switch rec.Code {
			case 200:
				if path == "/runs/counts" {
					var counts map[string]int
					if err := json.Unmarshal(rec.Body.Bytes(), &counts); err != nil || len(counts) != 5 {
						t.Fatalf("200 without the five counts: %q", rec.Body.String())
					}
					continue
				}
				var runs []json.RawMessage
				if err := json.Unmarshal(rec.Body.Bytes(), &runs); err != nil {
					t.Fatalf("200 without an array: %q", rec.Body.String())
				}
				if q, err := url.ParseQuery(query); err == nil && q.Get("limit") == "0" && len(runs) != 0 {
					t.Fatalf("limit=0 returned %d runs", len(runs))
				}
			case 400:
				var e struct {
					Error string `json:"error"`
				}
				if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e.Error == "" {
					t.Fatalf("400 without a JSON error: %q", rec.Body.String())
				}
			default:
				t.Fatalf("%s?%s answered %d %s", path, query, rec.Code, rec.Body.String())
			}
		}
	})
}

func filepathTemp() (string, error) { return os.MkdirTemp("", "durably-fuzz-") }
