// Package groupcommit funnels the writes of many goroutines into one writer
// goroutine that commits them in groups: while one group's transaction is
// being made durable, the next group collects. One fsync then covers the
// writes of every run that arrived meanwhile, which is how a store gets past
// the one-commit-per-write bound without weakening durability.
package groupcommit

import (
	"context"
	"errors"
	"sync"
)

// ErrClosed is returned for operations submitted after Close, and for those
// Close gave up on.
var ErrClosed = errors.New("groupcommit: writer closed")

// Apply commits a group of operations and returns one error per operation,
// nil where the operation is committed. It is called from a single
// goroutine, and must return soon after ctx ends (Close cancels it).
type Apply[Op any] func(ctx context.Context, ops []Op) []error

// Writer is the single writer. Operations are applied in submission order.
type Writer[Op any] struct {
	apply    Apply[Op]
	dropped  func(error)
	maxGroup int
	in       chan request[Op]
	// ctx is what apply runs under; abort ends it when Close gives up.
	ctx   context.Context
	abort context.CancelFunc

	mu     sync.RWMutex // guards closed against concurrent sends
	closed bool
	done   chan struct{}
}

type request[Op any] struct {
	op Op
	// ctx is the waiting caller's; once it ends, the operation is not
	// applied unless its group started already. Nil for fire-and-forget.
	ctx  context.Context
	done chan error // nil for fire-and-forget
}

// New starts a writer that hands groups of at most maxGroup operations to
// apply. dropped, if not nil, receives the errors of operations submitted
// without waiting.
func New[Op any](apply Apply[Op], maxGroup int, dropped func(error)) *Writer[Op] {
	w := &Writer[Op]{
		apply:    apply,
		dropped:  dropped,
		maxGroup: maxGroup,
		in:       make(chan request[Op], maxGroup*4),
		done:     make(chan struct{}),
	}
	w.ctx, w.abort = context.WithCancel(context.Background())
	go w.loop()
	return w
}

var donePool = sync.Pool{New: func() any { return make(chan error, 1) }}

// Do submits op and waits until it is committed or has failed. When ctx ends
// first, Do returns ctx's error; the operation is then dropped if its group
// has not started yet, and may still be committed if it has.
func (w *Writer[Op]) Do(ctx context.Context, op Op) error {
	done := donePool.Get().(chan error)
	if err := w.send(request[Op]{op: op, ctx: ctx, done: done}); err != nil {
		donePool.Put(done)
		return err
	}
	select {
	case err := <-done:
		donePool.Put(done)
		return err
	case <-ctx.Done():
		// done is abandoned: the writer's send into its buffer never blocks.
		return ctx.Err()
	}
}

// Submit queues op without waiting for it; its error is dropped. For writes
// whose loss costs nothing but freshness (progress), or that are awaited
// through a later operation (the writer keeps order).
func (w *Writer[Op]) Submit(op Op) error {
	return w.send(request[Op]{op: op})
}

func (w *Writer[Op]) send(r request[Op]) error {
	w.mu.RLock()
	defer w.mu.RUnlock()
	if w.closed {
		return ErrClosed
	}
	w.in <- r
	return nil
}

// Close stops taking operations and commits those submitted before it. If
// ctx ends first, the group in progress is cancelled (its operations fail
// with whatever apply makes of the cancellation, and may have committed)
// and those still queued fail with ErrClosed, unapplied; Close returns once
// the writer has stopped, which takes as long as apply takes to notice.
func (w *Writer[Op]) Close(ctx context.Context) {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.in)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
	case <-ctx.Done():
		w.abort()
		<-w.done
	}
	w.abort() // the writer's context ends with it
}

func (w *Writer[Op]) loop() {
	defer close(w.done)
	group := make([]request[Op], 0, w.maxGroup)
	ops := make([]Op, 0, w.maxGroup)
	for {
		first, ok := <-w.in
		if !ok {
			return
		}
		group = w.collect(append(group[:0], first))
		if len(group) == 0 {
			continue
		}
		ops = ops[:0]
		for _, r := range group {
			ops = append(ops, r.op)
		}
		errs := w.apply(w.ctx, ops)
		var zero Op
		for i, r := range group {
			w.answer(r, errs[i])
			group[i] = request[Op]{}
			ops[i] = zero
		}
	}
}

// collect adds to group what is queued, up to maxGroup, and takes out the
// requests not to apply: those whose caller stopped waiting (answered with
// its context's error, which nobody reads) and, once Close gave up, all
// (answered with ErrClosed).
func (w *Writer[Op]) collect(group []request[Op]) []request[Op] {
collect:
	for len(group) < w.maxGroup {
		select {
		case r, ok := <-w.in:
			if !ok {
				break collect
			}
			group = append(group, r)
		default:
			break collect
		}
	}
	kept := group[:0]
	for _, r := range group {
		switch {
		case w.ctx.Err() != nil:
			w.answer(r, ErrClosed)
		case r.ctx != nil && r.ctx.Err() != nil:
			w.answer(r, r.ctx.Err())
		default:
			kept = append(kept, r)
		}
	}
	clear(group[len(kept):])
	return kept
}

// answer hands r its outcome: to the waiting caller, or to dropped for a
// fire-and-forget operation that failed.
func (w *Writer[Op]) answer(r request[Op], err error) {
	if r.done != nil {
		r.done <- err
	} else if err != nil && w.dropped != nil {
		w.dropped(err)
	}
}

// Commit commits ops together (one transaction, or one pipeline); it returns
// the error that failed the whole group.
type Commit[Op any] func(ctx context.Context, ops []Op) error

// Grouped is the failure policy both stores share for a group: commit
// everything at once; when that fails, retry each operation alone, so that a
// bad write (one that violates a constraint, say) fails only its caller. A
// transient failure (transient(err): the database is out of reach, busy or
// full) fails every operation alike instead, because retrying each alone
// would only multiply the failed connects or the waits on a busy lock; the
// callers' own retry policy takes over. reset, if not nil, clears an
// operation's recorded outcome before it is retried alone. Grouped returns
// one error per operation, nil where it is committed.
func Grouped[Op any](ctx context.Context, ops []Op, commit Commit[Op], transient func(error) bool, reset func(Op)) []error {
	errs := make([]error, len(ops))
	if len(ops) == 0 {
		return errs
	}
	err := commit(ctx, ops)
	if err == nil {
		return errs
	}
	if len(ops) == 1 || transient(err) {
		for i := range errs {
			errs[i] = err
		}
		return errs
	}
	for i, o := range ops {
		if reset != nil {
			reset(o)
		}
		errs[i] = commit(ctx, ops[i:i+1])
	}
	return errs
}
