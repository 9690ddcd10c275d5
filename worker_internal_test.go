package durably

import "testing"

// TestClaimWantIsSlotsFreeOrEnding: whatever the worker's state, a claim
// asks for no more runs than slots are free or ending less the runs already
// claimed for them, so that every run leased here starts here within one
// write; and a free slot with nothing claimed for it always claims.
func TestClaimWantIsSlotsFreeOrEnding(t *testing.T) {
	for _, slots := range []int{1, 2, 4, 8, 16} {
		for executing := 0; executing <= slots; executing++ {
			for ending := 0; ending <= executing; ending++ {
				for buffered := 0; buffered <= ending+1; buffered++ {
					w := &worker{e: &Engine{cfg: Config{MaxConcurrentRuns: slots}}}
					w.executing, w.ending, w.buffer = executing, ending, make([]*claimed, buffered)
					want := w.claimWant()
					if room := slots - executing + ending - buffered; want > max(room, 0) {
						t.Fatalf("%d slots, %d executing (%d ending), %d claimed: asks for %d runs", slots, executing, ending, buffered, want)
					}
					if executing < slots && buffered == 0 && want == 0 {
						t.Fatalf("%d slots, %d executing, nothing claimed: asks for nothing", slots, executing)
					}
				}
			}
		}
	}
}
