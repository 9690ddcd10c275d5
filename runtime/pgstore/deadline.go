package pgstore

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// Every call of the store runs under a deadline of its own (Options), on
// top of the caller's context: the engine calls with contexts that never
// end, and a connection that stops answering, without being closed, would
// otherwise hold the call, and the writer behind it, for ever.

// noAnswerError is the cause of a call's context ending at the store's
// deadline, and part of the error the call returns.
type noAnswerError struct {
	limit  time.Duration
	option string // the field of Options that set the limit
}

func (e *noAnswerError) Error() string {
	return fmt.Sprintf("no answer from the database within %v (pgstore.Options.%s)", e.limit, e.option)
}

// withDeadline bounds ctx to limit, set by Options' field option; a limit
// of zero or less adds no bound.
func withDeadline(ctx context.Context, limit time.Duration, option string) (context.Context, context.CancelFunc) {
	if limit <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeoutCause(ctx, limit, &noAnswerError{limit: limit, option: option})
}

// bound is withDeadline with Options.Timeout, the bound of most calls.
func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	return withDeadline(ctx, s.timeout, "Timeout")
}

// failed classifies err, the failure of a call made under ctx. When ctx
// ended at the store's deadline, the error says so, and the pool's
// connections are dropped: the one that did not answer is closed already
// (pgx closes a connection whose context ends mid-statement), and those
// idle beside it most likely went silent with it.
func (s *Store) failed(ctx context.Context, err error) error {
	if err == nil {
		return nil
	}
	var limit *noAnswerError
	if errors.As(context.Cause(ctx), &limit) {
		s.resetPool()
		if !errors.As(err, &limit) {
			err = fmt.Errorf("%w: %w", err, limit)
		}
	}
	return classify(err)
}

// resetPool closes the pool's idle connections, and its busy ones once
// they are released, at most once a second: after a silent drop, every
// connection opened before it is dead, and each would otherwise cost a
// ping's timeout, or a call's, to find out.
func (s *Store) resetPool() {
	now := time.Now().UnixNano()
	last := s.lastReset.Load()
	if now-last < int64(time.Second) || !s.lastReset.CompareAndSwap(last, now) {
		return
	}
	s.pool.Reset()
}
