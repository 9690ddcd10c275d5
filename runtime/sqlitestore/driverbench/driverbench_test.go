// Package driverbench compares SQLite drivers on the store's own statements
// and schema: modernc.org/sqlite, the store's driver, against
// github.com/ncruces/go-sqlite3 (SQLite compiled to Wasm and translated to
// Go by wasm2go; cgo-free too). The store always uses modernc; this module
// only swaps the driver name under it (internal/sqlitedriver) for the
// length of a benchmark.
//
//	cd runtime/sqlitestore/driverbench
//	go test -run '^$' -bench . -benchmem -benchtime 2000x   # micro-benchmarks and drains
package driverbench

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	_ "github.com/ncruces/go-sqlite3/driver" // registers "sqlite3"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/runtime/sqlitestore/internal/sqlitedriver"
	"github.com/durably-go/durably/runtime/storetest"
	"github.com/durably-go/durably/store"
)

var drivers = []struct {
	name, driver string
	uri          bool
}{
	{"modernc", "sqlite", false},
	{"ncruces", "sqlite3", true},
}

// use sets the store's driver for the length of b.
func use(b *testing.B, driver string, uri bool) {
	prevName, prevURI := sqlitedriver.Name, sqlitedriver.URI
	sqlitedriver.Name, sqlitedriver.URI = driver, uri
	b.Cleanup(func() { sqlitedriver.Name, sqlitedriver.URI = prevName, prevURI })
}

func open(b *testing.B, sync string) store.Store {
	st, err := sqlitestore.Open(filepath.Join(b.TempDir(), "durably.db"), sqlitestore.Options{Synchronous: sync})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = st.Close() })
	return st
}

// BenchmarkStore is the store's micro-benchmark suite (storetest.Benchmark)
// on each driver, durable (synchronous=FULL, each operation waits for its
// fsync) and with synchronous=OFF, where what is left is the CPU the
// driver spends on the statements and the commit.
func BenchmarkStore(b *testing.B) {
	for _, d := range drivers {
		for _, sync := range []string{"FULL", "OFF"} {
			b.Run(d.name+"/"+sync, func(b *testing.B) {
				use(b, d.driver, d.uri)
				storetest.Benchmark(b, func(b *testing.B) store.Store { return open(b, sync) })
			})
		}
	}
}

type in struct {
	I int `json:"i"`
}

type out struct {
	V   int    `json:"v"`
	Tag string `json:"tag"`
}

// steps is durably-bench's process job: three persisted steps.
var steps = &durably.Job[in, int]{
	Name: "bench-steps",
	Run: func(ctx context.Context, s *durably.StepContext, x in) (int, error) {
		var v int
		for _, name := range []string{"a", "b", "c"} {
			r, err := durably.RunStep(s, name, func(ctx context.Context) (out, error) { return out{V: v + 1, Tag: name}, nil })
			if err != nil {
				return 0, err
			}
			v = r.V
		}
		return v, nil
	},
}

// BenchmarkProcess is durably-bench's process workload: b.N pending runs of
// three steps each, drained by a worker with 1 or 8 slots; runs/s.
func BenchmarkProcess(b *testing.B) {
	for _, d := range drivers {
		for _, slots := range []int{1, 8} {
			b.Run(fmt.Sprintf("%s/slots-%d", d.name, slots), func(b *testing.B) {
				use(b, d.driver, d.uri)
				ctx := context.Background()
				e, err := durably.New(durably.Config{Store: open(b, "FULL"), MaxConcurrentRuns: slots})
				if err != nil {
					b.Fatal(err)
				}
				if err := e.Migrate(ctx); err != nil {
					b.Fatal(err)
				}
				j := durably.MustRegister(e, steps)
				for start := 0; start < b.N; start += 500 {
					items := make([]durably.BatchItem[in], 0, 500)
					for i := start; i < min(start+500, b.N); i++ {
						items = append(items, durably.BatchItem[in]{Input: in{I: i}})
					}
					if _, err := j.BatchTrigger(ctx, items); err != nil {
						b.Fatal(err)
					}
				}
				var completed atomic.Int64
				done := make(chan struct{})
				e.OnEvent(func(ev durably.Event) {
					if ev.Type == durably.EventRunComplete && completed.Add(1) == int64(b.N) {
						close(done)
					}
				})
				b.ResetTimer()
				if err := e.Start(); err != nil {
					b.Fatal(err)
				}
				select {
				case <-done:
				case <-time.After(10 * time.Minute):
					b.Fatal("timed out")
				}
				b.StopTimer()
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "runs/s")
				if err := e.Stop(ctx); err != nil {
					b.Fatal(err)
				}
			})
		}
	}
}
