package durably

import (
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/durably-go/durably/store"
)

// The kinds of errors the engine returns. Test for them with errors.Is; the
// error's message is the one the protocol shows (docs/contract.md, "Errors").
var (
	// ErrValidation: the request is malformed; nothing was written (HTTP 400).
	ErrValidation = errors.New("validation error")
	// ErrNotFound: the run or job does not exist (HTTP 404).
	ErrNotFound = errors.New("not found")
	// ErrConflict: the run is in the wrong state, or a pending run already
	// holds the concurrency key (HTTP 409).
	ErrConflict = errors.New("conflict")
	// ErrCancelled: the run was cancelled. Step contexts end with it, and
	// wait helpers return it for cancelled runs.
	ErrCancelled = errors.New("run cancelled")
	// ErrLeaseLost: this worker no longer holds the run's lease; another
	// worker may own it now.
	ErrLeaseLost = errors.New("lease lost")
	// ErrTimeout: a wait helper's timeout elapsed first. The run goes on.
	ErrTimeout = errors.New("timeout")
	// ErrShutdown: the engine stopped before the run finished; the run's
	// lease is handed back so another worker resumes it.
	ErrShutdown = errors.New("engine stopped")
	// ErrDeadline: a run or a step ran past its timeout (Job.Timeout,
	// Job.StepTimeout, WithStepTimeout). Step and run contexts end with it
	// as their cause.
	ErrDeadline = errors.New("deadline exceeded")
	// ErrUnavailable: the database could not be reached, did not answer
	// within the store's deadline, or refused the work for a transient
	// reason; nothing is known to have changed and the call may be
	// retried (HTTP 503).
	ErrUnavailable = store.ErrUnavailable
)

// Error is an error of one of the kinds above with the protocol's message.
type Error struct {
	Kind error
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

// Unwrap lets errors.Is match the kind.
func (e *Error) Unwrap() error { return e.Kind }

// StatusCode is the HTTP status the error maps to (R-130, H-011).
func (e *Error) StatusCode() int { return StatusCode(e) }

// StatusCode maps any error to its HTTP status: 400, 404, 409, 503, or 500 for
// everything that is not one of the engine's kinds.
func StatusCode(err error) int {
	switch {
	case errors.Is(err, ErrValidation):
		return http.StatusBadRequest
	case errors.Is(err, ErrNotFound):
		return http.StatusNotFound
	case errors.Is(err, ErrConflict):
		return http.StatusConflict
	case errors.Is(err, ErrUnavailable):
		return http.StatusServiceUnavailable
	default:
		return http.StatusInternalServerError
	}
}

func newError(kind error, format string, args ...any) *Error {
	return &Error{Kind: kind, Msg: fmt.Sprintf(format, args...)}
}

func validationErrorf(format string, args ...any) error {
	return newError(ErrValidation, format, args...)
}

func notFoundf(format string, args ...any) error { return newError(ErrNotFound, format, args...) }

func conflictf(format string, args ...any) error { return newError(ErrConflict, format, args...) }

func cancelledError(runID string) error {
	return newError(ErrCancelled, "Run was cancelled: %s", runID)
}

func runTimedOut(runID string, timeout time.Duration) error {
	return newError(ErrDeadline, "Run %s timed out: its job allows %s from its first start (Job.Timeout)", runID, timeout)
}

func stepTimedOut(name string, timeout time.Duration) error {
	return newError(ErrDeadline, "Step %q timed out after %s", name, timeout)
}

func leaseLostError(runID string) error {
	return newError(ErrLeaseLost, "Lease ownership was lost: %s", runID)
}
