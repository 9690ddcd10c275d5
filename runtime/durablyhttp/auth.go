package durablyhttp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/durably-go/durably"
)

// AuthConfig holds the hooks that authenticate requests and authorize
// operations (H-060 … H-065), typed by the authentication context C that
// Authenticate returns and the labels type L of the application.
//
// A hook rejects a request by returning a *Rejection (see Reject): the
// handler writes its status and body verbatim. A hook that returns an engine
// error (durably.ErrNotFound, …) answers with that error's status and an
// {"error": …} body. Any other error answers 500 without its text, which is
// logged instead.
type AuthConfig[C any, L durably.Labels[L]] struct {
	// Authenticate runs first on every request, before routing: an
	// unauthenticated request to an unknown route gets the rejection, not
	// 404 (H-003). Required when AuthConfig is set (H-061).
	Authenticate func(r *http.Request) (C, error)
	// OnTrigger may reject a trigger, and may change it: labels set here
	// are stamped server-side (D8). It runs after the job's existence and
	// the label keys the request names are checked, and before the input
	// and the labels' values are validated (H-033, H-062).
	OnTrigger func(ctx context.Context, auth C, req *TriggerRequest[L]) error
	// OnRunAccess guards every operation on one run, after the run was
	// found (H-063). Return Reject(404, …) to hide a run's existence.
	// GET /logs (an addition of durably-go) asks for OpSteps, as GET
	// /steps does: both show what the run did; so does GET /signals, the
	// signals kept for it. GET /children asks for OpRead on the parent,
	// POST /signal for OpSignal.
	OnRunAccess func(ctx context.Context, auth C, run *Run[L], op Operation) error
	// ScopeRuns returns the filter GET /runs uses (H-064), typically
	// forcing a tenant label.
	ScopeRuns func(ctx context.Context, auth C, filter RunsFilter[L]) (RunsFilter[L], error)
	// ScopeRunsSubscribe returns the filter of GET /runs/subscribe; when
	// nil, ScopeRuns is used and only its job names and labels count.
	ScopeRunsSubscribe func(ctx context.Context, auth C, filter SubscribeFilter[L]) (SubscribeFilter[L], error)
}

// Operation names what OnRunAccess is asked to allow.
type Operation string

// The operations on one run (H-063, and OpResume).
const (
	OpRead      Operation = "read"
	OpSteps     Operation = "steps"
	OpSubscribe Operation = "subscribe"
	OpRetrigger Operation = "retrigger"
	OpCancel    Operation = "cancel"
	OpDelete    Operation = "delete"
	// OpResume guards POST /resume, an addition of durably-go (H-120).
	OpResume Operation = "resume"
	// OpSignal is POST /signal, an addition of durably-go: a
	// signal sent to the run.
	OpSignal Operation = "signal"
)

// TriggerRequest is a POST /trigger body (H-022) as OnTrigger sees it; the
// hook may change any field.
type TriggerRequest[L any] struct {
	JobName        string
	Input          json.RawMessage
	IdempotencyKey string
	ConcurrencyKey string
	// Labels is nil when the body carries none.
	Labels   *L
	Coalesce string
	// RunAt, Delay and Priority are the additive members runAt, delayMs and
	// priority: durably.WithRunAt, WithDelay and WithPriority. Zero
	// RunAt and Delay: at once; nil Priority: the job's.
	RunAt    time.Time
	Delay    time.Duration
	Priority *int
}

// Run is a run as the hooks see it: the full internal record (H-063),
// with typed labels.
type Run[L any] struct {
	*durably.Run
	Labels L
}

// RunsFilter is the filter of GET /runs (H-039) and GET /runs/counts.
type RunsFilter[L any] struct {
	JobNames []string
	Statuses []durably.Status
	// Labels: the set fields must all match.
	Labels L
	Limit  int // 0: none
	Offset int
	// CreatedFrom and CreatedTo bound the runs' creation time (the
	// additive parameters createdFrom and createdTo): from CreatedFrom on,
	// before CreatedTo; zero: open. A hook may narrow them.
	CreatedFrom time.Time
	CreatedTo   time.Time
	// After continues a list after a run (the additive parameter after:
	// keyset pagination, durably.RunFilter.After).
	After *durably.RunCursor
}

// engineFilter is the filter as the engine takes it.
func engineFilter[L durably.Labels[L]](f RunsFilter[L]) durably.RunFilter {
	return durably.RunFilter{
		Statuses: f.Statuses, JobNames: f.JobNames, Labels: f.Labels.ToMap(),
		Limit: f.Limit, Offset: f.Offset,
		CreatedFrom: f.CreatedFrom, CreatedTo: f.CreatedTo, After: f.After,
	}
}

// SubscribeFilter is the filter of GET /runs/subscribe (H-050).
type SubscribeFilter[L any] struct {
	JobNames []string
	Labels   L
}

// Rejection is a complete response a hook answers with instead of the
// operation (H-013).
type Rejection struct {
	Status      int
	Body        string
	ContentType string // default text/plain; charset=utf-8
}

func (r *Rejection) Error() string { return fmt.Sprintf("rejected with %d: %s", r.Status, r.Body) }

// Reject makes a Rejection with a plain-text body, e.g. Reject(403, "Forbidden").
func Reject(status int, body string) error { return &Rejection{Status: status, Body: body} }
