package durably

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// Backoff is how a RetryPolicy spaces attempts.
type Backoff string

// The backoff kinds.
const (
	// BackoffExponential waits Initial before the second attempt and
	// doubles the wait before each next one, up to Max.
	BackoffExponential Backoff = "exponential"
	// BackoffFixed waits Initial before every next attempt.
	BackoffFixed Backoff = "fixed"
)

// DefaultRetryInitial is a RetryPolicy's Initial when it is zero.
const DefaultRetryInitial = time.Second

// RetryPolicy says how often a failing step, or a failing job body, is
// tried and how long the run waits between attempts (R-075 … R-079). Set
// it per job (Job.Retry, generated from durably.yaml's retry:) or per step
// (WithStepRetry). While a run waits for its next attempt it is pending:
// it holds no worker slot and no lease, and it survives restarts.
type RetryPolicy struct {
	// MaxAttempts is the number of attempts in all, the first included:
	// 1 means no retry. Required, at least 1.
	MaxAttempts int
	// Backoff is BackoffExponential (the default when empty) or BackoffFixed.
	Backoff Backoff
	// Initial is the wait before the second attempt. Default 1s.
	Initial time.Duration
	// Max caps the wait between attempts; zero leaves it uncapped.
	Max time.Duration
	// Jitter, between 0 and 1, shortens each wait by a random fraction of
	// up to Jitter of it, so that runs failing together do not retry
	// together; Max stays an upper bound.
	Jitter float64
}

// validate reports the first invalid field, named as in Go.
func (p *RetryPolicy) validate() error {
	// Each message begins with the field it names, as Go spells it: its
	// capital is no sentence's (ST1005).
	switch {
	case p.MaxAttempts < 1:
		return fmt.Errorf("MaxAttempts must be at least 1, got %d", p.MaxAttempts)
	case p.Backoff != "" && p.Backoff != BackoffExponential && p.Backoff != BackoffFixed:
		return fmt.Errorf("Backoff must be %q or %q, got %q", BackoffExponential, BackoffFixed, p.Backoff)
	case p.Initial < 0:
		//lint:ignore ST1005 the field, as Go spells it
		return fmt.Errorf("Initial must not be negative, got %s", p.Initial)
	case p.Max < 0:
		//lint:ignore ST1005 the field, as Go spells it
		return fmt.Errorf("Max must not be negative, got %s", p.Max)
	case p.Max > 0 && p.Max < p.initial():
		//lint:ignore ST1005 the field, as Go spells it
		return fmt.Errorf("Max (%s) must not be less than Initial (%s)", p.Max, p.initial())
	case !(p.Jitter >= 0 && p.Jitter <= 1): // also refuses NaN
		//lint:ignore ST1005 the field, as Go spells it
		return fmt.Errorf("Jitter must be between 0 and 1, got %v", p.Jitter)
	}
	return nil
}

func (p *RetryPolicy) initial() time.Duration {
	if p.Initial == 0 {
		return DefaultRetryInitial
	}
	return p.Initial
}

// Delay is the wait after the failed attempt number attempt (1-based)
// before the next one, before jitter.
func (p *RetryPolicy) Delay(attempt int) time.Duration {
	d := p.initial()
	if p.Backoff != BackoffFixed {
		for i := 1; i < attempt; i++ {
			if d > time.Duration(1<<62)/2 || (p.Max > 0 && d >= p.Max) {
				break // doubling again would overflow or pass the cap anyway
			}
			d *= 2
		}
	}
	if p.Max > 0 && d > p.Max {
		d = p.Max
	}
	return d
}

// delay is Delay with the jitter drawn from r, which returns a number in
// [0, 1).
func (p *RetryPolicy) delay(attempt int, r func() float64) time.Duration {
	d := p.Delay(attempt)
	if p.Jitter > 0 {
		d -= time.Duration(float64(d) * p.Jitter * r())
	}
	return d
}

// retries reports whether a failure of attempt number attempt is followed
// by another attempt.
func (p *RetryPolicy) retries(attempt int) bool {
	return p != nil && attempt < p.MaxAttempts
}

// StepOption configures one RunStep call.
type StepOption interface{ applyStep(*stepOptions) }

type stepOptions struct {
	retry   *RetryPolicy
	timeout *time.Duration
}

type stepOptionFunc func(*stepOptions)

func (f stepOptionFunc) applyStep(o *stepOptions) { f(o) }

// WithStepRetry gives one step its own retry policy, in place of its job's
// (Job.Retry). WithStepRetry(RetryPolicy{MaxAttempts: 1}) turns retries
// off for the step. An invalid policy fails the step at once with an
// error naming the field.
func WithStepRetry(p RetryPolicy) StepOption {
	return stepOptionFunc(func(o *stepOptions) { o.retry = &p })
}

// WithStepTimeout bounds each attempt of one step, in place of its job's
// StepTimeout; 0 leaves the step unbounded. Past it, the step's context
// ends with an ErrDeadline error and the attempt fails (and is retried
// under the step's policy); a function that does not return within a
// second of the deadline is abandoned: it goes on in its goroutine, but its
// result is dropped.
func WithStepTimeout(d time.Duration) StepOption {
	return stepOptionFunc(func(o *stepOptions) { o.timeout = &d })
}

// Permanent marks err as not worth retrying: a step whose function returns
// it fails at once, whatever its retry policy, and a job body returning it
// fails its run at once. The message is err's; errors.Is and errors.As see
// through it.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err: err}
}

type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// IsPermanent reports whether err, or an error it wraps, was marked with
// Permanent.
func IsPermanent(err error) bool {
	var p *permanentError
	return errors.As(err, &p)
}

// stepFailure marks the error RunStep returns for a step that failed for
// good: its attempts are spent (or it had no retry policy), so that the
// job-level policy does not retry its run once more.
type stepFailure struct {
	step string
	err  error
}

func (e *stepFailure) Error() string { return e.err.Error() }
func (e *stepFailure) Unwrap() error { return e.err }

// ErrSuspended is returned by RunStep, Sleep and SleepUntil when the run
// was handed back to wait: for a retry's next attempt or a sleep's wake
// time. The job must return it (or an error wrapping it); the run is
// claimed again when the wait is over and resumes from its completed
// steps. The run is pending meanwhile, not failed.
var ErrSuspended = errors.New("run suspended")

func suspendedError(runID string, until time.Time) error {
	return &Error{Kind: ErrSuspended, Msg: fmt.Sprintf("Run %s suspended until %s", runID, until.UTC().Format(time.RFC3339Nano))}
}

// jitterSource is where the jitter of retry waits comes from.
func jitterSource() float64 { return rand.Float64() }

// retryableRunError reports whether a job-level error (the body's, not a
// step's) may be retried under the job's policy.
func retryableRunError(err error) bool {
	var sf *stepFailure
	var oe *outputError
	switch {
	case err == nil, IsPermanent(err), errors.As(err, &sf), errors.As(err, &oe),
		errors.Is(err, ErrCancelled), errors.Is(err, ErrLeaseLost), errors.Is(err, ErrShutdown), errors.Is(err, ErrSuspended):
		return false
	}
	return true
}
