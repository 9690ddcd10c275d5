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

// ErrClosed is returned for operations submitted after Close.
var ErrClosed = errors.New("groupcommit: writer closed")

// Apply commits a group of operations and returns one error per operation,
// nil where the operation is committed. It is called from a single goroutine.
type Apply[Op any] func(ctx context.Context, ops []Op) []error

// Writer is the single writer. Operations are applied in submission order.
type Writer[Op any] struct {
	apply    Apply[Op]
	dropped  func(error)
	maxGroup int
	in       chan request[Op]

	mu     sync.RWMutex // guards closed against concurrent sends
	closed bool
	done   chan struct{}
}

type request[Op any] struct {
	op   Op
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
	go w.loop()
	return w
}

var donePool = sync.Pool{New: func() any { return make(chan error, 1) }}

// Do submits op and waits until it is committed or has failed. When ctx ends
// first, Do returns ctx's error; the operation may still be committed later.
func (w *Writer[Op]) Do(ctx context.Context, op Op) error {
	done := donePool.Get().(chan error)
	if err := w.send(request[Op]{op: op, done: done}); err != nil {
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

// Close commits what was submitted before it and stops the writer.
func (w *Writer[Op]) Close() {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		<-w.done
		return
	}
	w.closed = true
	close(w.in)
	w.mu.Unlock()
	<-w.done
}

func (w *Writer[Op]) loop() {
	defer close(w.done)
	group := make([]request[Op], 0, w.maxGroup)
	ops := make([]Op, 0, w.maxGroup)
	ctx := context.Background()
	for {
		first, ok := <-w.in
		if !ok {
			return
		}
		group = append(group[:0], first)
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
		ops = ops[:0]
		for _, r := range group {
			ops = append(ops, r.op)
		}
		errs := w.apply(ctx, ops)
		var zero Op
		for i, r := range group {
			if r.done != nil {
				r.done <- errs[i]
			} else if errs[i] != nil && w.dropped != nil {
				w.dropped(errs[i])
			}
			group[i] = request[Op]{}
			ops[i] = zero
		}
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
