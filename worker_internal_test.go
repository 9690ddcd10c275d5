package durably

import (
	"context"
	"testing"
	"time"
)

// TestClaimsTakeAtLeastFourRuns: while runs are short, whatever the
// worker's size and state, a claim asks for nothing or for at least four
// runs, so that a claim's commit is shared by several runs (a worker of 4
// slots asked for 2); and a free slot with nothing buffered never waits
// for the next claim.
func TestClaimsTakeAtLeastFourRuns(t *testing.T) {
	for _, slots := range []int{1, 2, 4, 8, 16, 64} {
		for executing := 0; executing <= slots; executing++ {
			for buffered := 0; buffered <= slots+8; buffered++ {
				w := &worker{e: &Engine{cfg: Config{MaxConcurrentRuns: slots}}, runTime: 5 * time.Millisecond}
				w.executing, w.buffer = executing, make([]*claimed, buffered)
				want := w.claimWant()
				if want != 0 && want < 4 {
					t.Fatalf("%d slots, %d executing, %d buffered: claims %d runs", slots, executing, buffered, want)
				}
				if want == 0 && buffered == 0 && executing < slots {
					t.Fatalf("%d slots, %d executing, nothing buffered: claims nothing", slots, executing)
				}
			}
		}
	}
}

// TestLongRunsKeepTheSmallBuffer: when runs take long, a worker of few
// slots buffers no more than 4 runs beyond its slots, which other
// processes' idle workers could otherwise start.
func TestLongRunsKeepTheSmallBuffer(t *testing.T) {
	for _, slots := range []int{1, 2, 4} {
		w := &worker{e: &Engine{cfg: Config{MaxConcurrentRuns: slots}}, runTime: time.Second}
		if want := w.claimWant(); want != slots+4 {
			t.Fatalf("%d slots, idle, runs of 1s: claims %d runs, want %d", slots, want, slots+4)
		}
	}
}

// TestHandedBackRunsDoNotCountAsShortRuns: a run handed back to wait (a
// sleep, a retry's delay) leaves the worker's measure of how long runs take
// alone. Counted, twenty of them made long runs look short, and the worker
// claimed a buffer of runs for short ones while long ones held its slots.
func TestHandedBackRunsDoNotCountAsShortRuns(t *testing.T) {
	e, _ := scheduleTestEngine(t, Config{PollingInterval: 10 * time.Millisecond})
	ctx := context.Background()
	if err := e.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	sleeper := MustRegister(e, &Job[schedInput, int]{Name: "sleeper", Run: func(ctx context.Context, s *StepContext, in schedInput) (int, error) {
		return 0, Sleep(s, "nap", time.Hour)
	}})
	if err := e.Start(); err != nil {
		t.Fatal(err)
	}
	defer e.Stop(ctx)
	e.worker.mu.Lock()
	e.worker.runTime = time.Second // long runs so far
	e.worker.mu.Unlock()
	const n = 20
	for range n {
		if _, err := sleeper.Trigger(ctx, schedInput{}); err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		runs, err := e.ListRuns(ctx, RunFilter{})
		if err != nil {
			t.Fatal(err)
		}
		asleep := 0
		for _, r := range runs {
			if r.Status == StatusPending && !r.RunAt.IsZero() {
				asleep++
			}
		}
		if asleep == n {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d runs asleep after 10 s", asleep, n)
		}
	}
	e.worker.mu.Lock()
	got := e.worker.runTime
	e.worker.mu.Unlock()
	if got != time.Second {
		t.Fatalf("run time %v after %d runs handed back, want the 1s of before", got, n)
	}
}
