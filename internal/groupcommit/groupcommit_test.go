package groupcommit_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/durably-go/durably/internal/groupcommit"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// recorder is an Apply that records its groups. While held, the group in
// progress waits, so that the test can queue operations behind it.
type recorder struct {
	mu      sync.Mutex
	groups  [][]int
	fail    func(op int) error // nil: every op commits
	entered chan struct{}      // receives once per group, if not nil
	hold    chan struct{}      // the first group waits for it to close, if not nil
}

func (r *recorder) apply(ctx context.Context, ops []int) []error {
	if r.entered != nil {
		r.entered <- struct{}{}
	}
	r.mu.Lock()
	first := len(r.groups) == 0
	r.groups = append(r.groups, slices.Clone(ops))
	r.mu.Unlock()
	if first && r.hold != nil {
		<-r.hold
	}
	errs := make([]error, len(ops))
	if r.fail != nil {
		for i, op := range ops {
			errs[i] = r.fail(op)
		}
	}
	return errs
}

func (r *recorder) snapshot() [][]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.groups)
}

func (r *recorder) applied() []int {
	var all []int
	for _, g := range r.snapshot() {
		all = append(all, g...)
	}
	return all
}

// held starts a writer whose first group (op 0) is in apply and waits for
// release; everything submitted meanwhile queues.
func held(t *testing.T, maxGroup int, fail func(int) error, dropped func(error)) (*groupcommit.Writer[int], *recorder, func()) {
	t.Helper()
	r := &recorder{fail: fail, entered: make(chan struct{}, 1000), hold: make(chan struct{})}
	w := groupcommit.New(r.apply, maxGroup, dropped)
	if err := w.Submit(0); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first group was never applied")
	}
	var once sync.Once
	release := func() { once.Do(func() { close(r.hold) }) }
	t.Cleanup(func() { release(); w.Close(context.Background()) })
	return w, r, release
}

// While a group commits, the next one collects: what queued meanwhile is
// applied in groups of at most maxGroup, in submission order.
func TestGroupsCollectWhileACommitIsInProgress(t *testing.T) {
	for _, c := range []struct {
		maxGroup, queued int
		want             []int // sizes of the groups after the held one
	}{
		{maxGroup: 4, queued: 10, want: []int{4, 4, 2}},
		{maxGroup: 8, queued: 8, want: []int{8}},
		{maxGroup: 1, queued: 3, want: []int{1, 1, 1}},
	} {
		t.Run(fmt.Sprintf("max %d queued %d", c.maxGroup, c.queued), func(t *testing.T) {
			w, r, release := held(t, c.maxGroup, nil, nil)
			for op := 1; op <= c.queued; op++ {
				if err := w.Submit(op); err != nil {
					t.Fatal(err)
				}
			}
			release()
			w.Close(context.Background())
			groups := r.snapshot()
			var sizes []int
			for _, g := range groups[1:] {
				sizes = append(sizes, len(g))
			}
			if !slices.Equal(sizes, c.want) {
				t.Fatalf("groups %v: sizes after the held group %v, want %v", groups, sizes, c.want)
			}
			if got := r.applied(); !slices.Equal(got, seq(0, c.queued)) {
				t.Fatalf("applied %v, want submission order", got)
			}
		})
	}
}

// Operations from many goroutines keep each goroutine's order, and Do
// returns only once its operation is applied.
func TestOrderAndDo(t *testing.T) {
	r := &recorder{}
	w := groupcommit.New(r.apply, 16, nil)
	defer w.Close(context.Background())
	const goroutines, each = 8, 50
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range each {
				op := g*1000 + i
				if err := w.Do(context.Background(), op); err != nil {
					t.Errorf("Do(%d): %v", op, err)
					return
				}
				if !slices.Contains(r.applied(), op) {
					t.Errorf("Do(%d) returned before its operation was applied", op)
					return
				}
			}
		})
	}
	wg.Wait()
	applied := r.applied()
	if len(applied) != goroutines*each {
		t.Fatalf("applied %d operations, want %d", len(applied), goroutines*each)
	}
	last := map[int]int{}
	for _, op := range applied {
		g, i := op/1000, op%1000
		if prev, ok := last[g]; ok && i <= prev {
			t.Fatalf("goroutine %d: op %d applied after op %d", g, i, prev)
		}
		last[g] = i
	}
}

// Each operation gets its own error: Do returns it, and a submitted
// operation's error goes to dropped (and only there).
func TestErrorsReachTheirOperation(t *testing.T) {
	errOdd := errors.New("odd")
	fail := func(op int) error {
		if op%2 == 1 {
			return fmt.Errorf("op %d: %w", op, errOdd)
		}
		return nil
	}
	var mu sync.Mutex
	var dropped []string
	w, _, release := held(t, 64, fail, func(err error) {
		mu.Lock()
		defer mu.Unlock()
		dropped = append(dropped, err.Error())
	})
	for op := 1; op <= 5; op++ {
		if err := w.Submit(op); err != nil {
			t.Fatal(err)
		}
	}
	doErrs := make(chan error, 2)
	for _, op := range []int{6, 7} {
		go func() { doErrs <- w.Do(context.Background(), op) }()
	}
	release()
	got := []error{<-doErrs, <-doErrs}
	var nils, odds int
	for _, err := range got {
		switch {
		case err == nil:
			nils++
		case errors.Is(err, errOdd) && err.Error() == "op 7: odd":
			odds++
		default:
			t.Fatalf("Do: unexpected error %v", err)
		}
	}
	if nils != 1 || odds != 1 {
		t.Fatalf("Do errors %v: want op 6 nil and op 7 failed", got)
	}
	w.Close(context.Background())
	mu.Lock()
	defer mu.Unlock()
	slices.Sort(dropped)
	if want := []string{"op 1: odd", "op 3: odd", "op 5: odd"}; !slices.Equal(dropped, want) {
		t.Fatalf("dropped %v, want %v (submitted operations' errors only)", dropped, want)
	}
}

// Close commits what was submitted before it, and afterwards nothing is
// accepted. (15 operations: the queue holds 4×maxGroup; past that, Submit
// waits for the writer.)
func TestCloseCommitsWhatWasSubmitted(t *testing.T) {
	w, r, release := held(t, 4, nil, nil)
	for op := 1; op <= 15; op++ {
		if err := w.Submit(op); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan struct{})
	go func() {
		w.Close(context.Background())
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while a group was still being applied")
	case <-time.After(20 * time.Millisecond):
	}
	release()
	select {
	case <-closed:
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return")
	}
	if got := r.applied(); !slices.Equal(got, seq(0, 15)) {
		t.Fatalf("applied %v, want 0..15", got)
	}
	if err := w.Submit(99); !errors.Is(err, groupcommit.ErrClosed) {
		t.Fatalf("Submit after Close: %v, want ErrClosed", err)
	}
	if err := w.Do(context.Background(), 99); !errors.Is(err, groupcommit.ErrClosed) {
		t.Fatalf("Do after Close: %v, want ErrClosed", err)
	}
	w.Close(context.Background()) // a second Close returns at once
}

// When ctx ends first, Do returns ctx's error without waiting; the
// operation, queued behind a group in progress, is not applied (its caller
// was told it failed), and the writer goes on.
func TestDoReturnsWhenCtxEnds(t *testing.T) {
	for _, c := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{"cancelled", func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			return ctx, cancel
		}, context.Canceled},
		{"deadline", func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 10*time.Millisecond)
		}, context.DeadlineExceeded},
	} {
		t.Run(c.name, func(t *testing.T) {
			w, r, release := held(t, 4, nil, nil)
			ctx, cancel := c.ctx()
			defer cancel()
			if err := w.Do(ctx, 1); !errors.Is(err, c.want) {
				t.Fatalf("Do with an ended ctx: %v, want %v", err, c.want)
			}
			release()
			if err := w.Do(context.Background(), 2); err != nil {
				t.Fatalf("Do after an abandoned Do: %v", err)
			}
			if got := r.applied(); !slices.Equal(got, []int{0, 2}) {
				t.Fatalf("applied %v, want [0 2]: the abandoned operation is dropped", got)
			}
		})
	}
}

// An operation whose caller stops waiting once its group has started is
// applied all the same: the commit may already be under way.
func TestDoAbandonedInItsGroupIsApplied(t *testing.T) {
	r := &recorder{entered: make(chan struct{}, 10), hold: make(chan struct{})}
	w := groupcommit.New(r.apply, 4, nil)
	defer w.Close(context.Background())
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Do(ctx, 1) }()
	<-r.entered // op 1's group is in apply
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Fatalf("Do: %v, want context.Canceled", err)
	}
	close(r.hold)
	if err := w.Do(context.Background(), 2); err != nil {
		t.Fatal(err)
	}
	if got := r.applied(); !slices.Equal(got, []int{1, 2}) {
		t.Fatalf("applied %v, want [1 2]", got)
	}
}

// Close with a context that ends while a group hangs (a database that
// stopped answering) cancels that group and fails what is queued with
// ErrClosed, unapplied, instead of waiting for ever.
func TestCloseGivesUpWhenCtxEnds(t *testing.T) {
	entered := make(chan struct{}, 10)
	dropped := make(chan error, 10)
	var mu sync.Mutex
	var applied []int
	w := groupcommit.New(func(ctx context.Context, ops []int) []error {
		entered <- struct{}{}
		errs := make([]error, len(ops))
		if ops[0] == 0 {
			<-ctx.Done() // hangs until cancelled
			for i := range errs {
				errs[i] = ctx.Err()
			}
			return errs
		}
		mu.Lock()
		applied = append(applied, ops...)
		mu.Unlock()
		return errs
	}, 1, func(err error) { dropped <- err })
	hung := make(chan error, 1)
	go func() { hung <- w.Do(context.Background(), 0) }()
	<-entered
	if err := w.Submit(1); err != nil { // queued behind the hung group
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	w.Close(ctx)
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("Close took %v", took)
	}
	if err := <-hung; !errors.Is(err, context.Canceled) {
		t.Fatalf("the hung group's Do: %v, want its cancellation", err)
	}
	if err := <-dropped; !errors.Is(err, groupcommit.ErrClosed) {
		t.Fatalf("the queued operation: %v, want ErrClosed", err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(applied) != 0 {
		t.Fatalf("applied %v after Close gave up, want nothing", applied)
	}
}

func seq(from, to int) []int {
	var s []int
	for i := from; i <= to; i++ {
		s = append(s, i)
	}
	return s
}
