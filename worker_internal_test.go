package durably

import (
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
