// Package durablyclient is a Go client of Durably's HTTP/SSE protocol, the
// runtime of the typed client packages durably-gen emits.
package durablyclient

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/durably-go/durably"
)

// Client talks to a durably server. L is the labels type (a generated
// Labels struct, or durably.MapLabels).
type Client[L durably.Labels[L]] struct {
	base string
	hc   *http.Client
	edit func(*http.Request) error
	poll time.Duration
}

// Option configures a Client.
type Option func(*config)

type config struct {
	hc   *http.Client
	edit func(*http.Request) error
	poll time.Duration
}

// WithPollInterval sets how often Wait asks for a run's state when the
// run's event stream is not available (default one second).
func WithPollInterval(d time.Duration) Option { return func(c *config) { c.poll = d } }

// WithHTTPClient sets the *http.Client (default http.DefaultClient).
func WithHTTPClient(hc *http.Client) Option { return func(c *config) { c.hc = hc } }

// WithRequestEditor edits every request before it is sent, e.g. to add
// authentication headers.
func WithRequestEditor(edit func(*http.Request) error) Option {
	return func(c *config) { c.edit = edit }
}

// New returns a client of the handler mounted at baseURL
// (e.g. "https://example.com/api/durably").
func New[L durably.Labels[L]](baseURL string, opts ...Option) *Client[L] {
	c := config{hc: http.DefaultClient, poll: time.Second}
	for _, o := range opts {
		o(&c)
	}
	if c.poll <= 0 {
		c.poll = time.Second
	}
	return &Client[L]{base: strings.TrimSuffix(baseURL, "/"), hc: c.hc, edit: c.edit, poll: c.poll}
}

// Error is a non-2xx answer of the server.
type Error struct {
	Status  int
	Message string // the body's "error", or the body itself
}

func (e *Error) Error() string { return fmt.Sprintf("durably server: %d: %s", e.Status, e.Message) }

// responseError is the Error of a refused request: the body's "error" when
// it is the server's JSON error, else the body itself.
func responseError(status int, body []byte) *Error {
	var eb struct {
		Error string `json:"error"`
	}
	msg := string(body)
	if json.Unmarshal(body, &eb) == nil && eb.Error != "" {
		msg = eb.Error
	}
	return &Error{Status: status, Message: msg}
}

// Is maps statuses to the engine's error kinds, so that errors.Is(err,
// durably.ErrNotFound) works across the wire.
func (e *Error) Is(target error) bool {
	switch target {
	case durably.ErrValidation:
		return e.Status == http.StatusBadRequest
	case durably.ErrNotFound:
		return e.Status == http.StatusNotFound
	case durably.ErrConflict:
		return e.Status == http.StatusConflict
	}
	return false
}

func (c *Client[L]) do(ctx context.Context, method, path string, q url.Values, body any, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	u := c.base + path
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.edit != nil {
		if err := c.edit(req); err != nil {
			return err
		}
	}
	res, err := c.hc.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	if err != nil {
		return err
	}
	if res.StatusCode/100 != 2 {
		return responseError(res.StatusCode, data)
	}
	if out == nil {
		return nil
	}
	return json.Unmarshal(data, out)
}

// TriggerOptions are the options of a trigger.
type TriggerOptions[L any] struct {
	// Labels, when set, are sent; the server's OnTrigger may set them too.
	Labels         *L
	IdempotencyKey string
	ConcurrencyKey string
	CoalesceSkip   bool
	// RunAt, Delay and Priority are sent as the additive members runAt,
	// delayMs and priority when set: durably.WithRunAt, WithDelay
	// and WithPriority on the server. Delay is sent in whole milliseconds,
	// rounded up so that the run never becomes claimable before it; a
	// negative Delay is sent for the server to refuse (a 400).
	RunAt    time.Time
	Delay    time.Duration
	Priority *int
}

// Triggered is the answer to a trigger.
type Triggered struct {
	RunID       string              `json:"runId"`
	Disposition durably.Disposition `json:"disposition"`
}

// Trigger triggers job with input.
func (c *Client[L]) Trigger(ctx context.Context, job string, input any, opts TriggerOptions[L]) (Triggered, error) {
	body := map[string]any{"jobName": job, "input": input}
	if opts.Labels != nil {
		body["labels"] = (*opts.Labels).ToMap()
	}
	if opts.IdempotencyKey != "" {
		body["idempotencyKey"] = opts.IdempotencyKey
	}
	if opts.ConcurrencyKey != "" {
		body["concurrencyKey"] = opts.ConcurrencyKey
	}
	if opts.CoalesceSkip {
		body["coalesce"] = durably.CoalesceSkip
	}
	if !opts.RunAt.IsZero() {
		body["runAt"] = opts.RunAt.UTC().Format(time.RFC3339Nano)
	}
	if opts.Delay != 0 {
		body["delayMs"] = delayMs(opts.Delay)
	}
	if opts.Priority != nil {
		body["priority"] = *opts.Priority
	}
	var t Triggered
	err := c.do(ctx, http.MethodPost, "/trigger", nil, body, &t)
	return t, err
}

// delayMs is d in whole milliseconds, rounded up: a positive d never
// shrinks (500µs is 1ms, not 0, which would mean at once).
func delayMs(d time.Duration) int64 {
	ms := d.Milliseconds()
	if d%time.Millisecond > 0 {
		ms++
	}
	return ms
}

// Run is a run as the server shows it (H-020), read into the engine's
// record so that durably.DecodeRun decodes it as it decodes the engine's
// runs. What the wire leaves out (the keys, the lease, updatedAt) is zero.
type Run = durably.Run

// wireRun is the ClientRun projection of H-020 as it arrives.
type wireRun struct {
	ID                 string            `json:"id"`
	JobName            string            `json:"jobName"`
	Input              json.RawMessage   `json:"input"`
	Status             durably.Status    `json:"status"`
	CurrentStepIndex   int               `json:"currentStepIndex"`
	CompletedStepCount int               `json:"completedStepCount"`
	Progress           *durably.Progress `json:"progress"`
	Output             json.RawMessage   `json:"output"`
	Error              *string           `json:"error"`
	Labels             map[string]string `json:"labels"`
	StartedAt          *time.Time        `json:"startedAt"`
	CompletedAt        *time.Time        `json:"completedAt"`
	CreatedAt          time.Time         `json:"createdAt"`
	// durably-go's additive members; absent from the original's.
	RunAt    *time.Time        `json:"runAt"`
	Priority int               `json:"priority"`
	Attempt  int               `json:"attempt"`
	Crashes  int               `json:"crashes"`
	Attempts []durably.Attempt `json:"attempts"`
	// Additive members of issue 22: a child's parent, and what a
	// pending run waits for.
	ParentRunID *string `json:"parentRunId"`
	WaitingFor  *string `json:"waitingFor"`
}

func (w *wireRun) run() *Run {
	r := &Run{
		ID: w.ID, JobName: w.JobName, Input: w.Input, Status: w.Status,
		CurrentStepIndex: w.CurrentStepIndex, CompletedStepCount: w.CompletedStepCount,
		Progress: w.Progress, Labels: w.Labels, CreatedAt: w.CreatedAt,
		Priority: w.Priority, Attempt: w.Attempt, Crashes: w.Crashes, Attempts: w.Attempts,
	}
	if w.RunAt != nil {
		r.RunAt = *w.RunAt
	}
	if w.ParentRunID != nil {
		r.ParentRunID = *w.ParentRunID
	}
	if w.WaitingFor != nil {
		r.WaitingFor = *w.WaitingFor
	}
	// The engine's record keeps no output rather than JSON null.
	if len(w.Output) > 0 && string(w.Output) != "null" {
		r.Output = w.Output
	}
	if w.Error != nil {
		r.Error = *w.Error
	}
	if w.StartedAt != nil {
		r.StartedAt = *w.StartedAt
	}
	if w.CompletedAt != nil {
		r.CompletedAt = *w.CompletedAt
	}
	return r
}

// GetRun returns a run, or nil when there is none (404).
func (c *Client[L]) GetRun(ctx context.Context, id string) (*Run, error) {
	var r wireRun
	err := c.do(ctx, http.MethodGet, "/run", url.Values{"runId": {id}}, nil, &r)
	if errors.Is(err, durably.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return r.run(), nil
}

// ListOptions filter GET /runs.
type ListOptions[L any] struct {
	JobNames []string
	Statuses []durably.Status
	Labels   *L
	Limit    int // 0: none
	Offset   int
}

// ListRuns lists runs newest first.
func (c *Client[L]) ListRuns(ctx context.Context, o ListOptions[L]) ([]*Run, error) {
	q := url.Values{}
	for _, j := range o.JobNames {
		q.Add("jobName", j)
	}
	for _, s := range o.Statuses {
		q.Add("status", string(s))
	}
	if o.Labels != nil {
		for k, v := range (*o.Labels).ToMap() {
			q.Set("label."+k, v)
		}
	}
	if o.Limit > 0 {
		q.Set("limit", strconv.Itoa(o.Limit))
	}
	if o.Offset > 0 {
		q.Set("offset", strconv.Itoa(o.Offset))
	}
	var wire []wireRun
	if err := c.do(ctx, http.MethodGet, "/runs", q, nil, &wire); err != nil {
		return nil, err
	}
	runs := make([]*Run, len(wire))
	for i := range wire {
		runs[i] = wire[i].run()
	}
	return runs, nil
}

// Step is a step as GET /steps shows it (H-021).
type Step struct {
	ID          string          `json:"id"`
	RunID       string          `json:"runId"`
	Name        string          `json:"name"`
	Index       int             `json:"index"`
	Status      string          `json:"status"`
	Output      json.RawMessage `json:"output"`
	Error       *string         `json:"error"`
	StartedAt   time.Time       `json:"startedAt"`
	CompletedAt *time.Time      `json:"completedAt"`
	// Attempt is the step's 1-based attempt (additive, R-207); 0 from a
	// server that does not send it.
	Attempt int `json:"attempt"`
}

// Steps returns a run's steps.
func (c *Client[L]) Steps(ctx context.Context, id string) ([]Step, error) {
	var steps []Step
	err := c.do(ctx, http.MethodGet, "/steps", url.Values{"runId": {id}}, nil, &steps)
	return steps, err
}

// Cancel cancels a run.
func (c *Client[L]) Cancel(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodPost, "/cancel", url.Values{"runId": {id}}, nil, nil)
}

// Retrigger makes a new run from a finished one and returns its id.
func (c *Client[L]) Retrigger(ctx context.Context, id string) (string, error) {
	var out struct {
		RunID string `json:"runId"`
	}
	err := c.do(ctx, http.MethodPost, "/retrigger", url.Values{"runId": {id}}, nil, &out)
	return out.RunID, err
}

// Resume makes a failed or cancelled run pending again, to go on from its
// first unfinished step (POST /resume, H-120, an addition of durably-go):
// the same run, whose id it returns.
func (c *Client[L]) Resume(ctx context.Context, id string) (string, error) {
	var out struct {
		RunID string `json:"runId"`
	}
	err := c.do(ctx, http.MethodPost, "/resume", url.Values{"runId": {id}}, nil, &out)
	return out.RunID, err
}

// Delete deletes a finished run.
func (c *Client[L]) Delete(ctx context.Context, id string) error {
	return c.do(ctx, http.MethodDelete, "/run", url.Values{"runId": {id}}, nil, nil)
}

// Signal sends the signal name with a payload (any value that encodes to
// JSON) to a run (POST /signal, R-244). The typed clients' Signal methods
// call it with the payload type the job declares.
func (c *Client[L]) Signal(ctx context.Context, id, name string, payload any) error {
	raw, err := json.Marshal(payload)
	if err != nil {
		return fmt.Errorf("durablyclient: signal %q: encode payload: %w", name, err)
	}
	body := struct {
		Name    string          `json:"name"`
		Payload json.RawMessage `json:"payload"`
	}{name, raw}
	return c.do(ctx, http.MethodPost, "/signal", url.Values{"runId": {id}}, body, nil)
}

// Signals returns the signals kept for a run, not yet received (GET
// /signals).
func (c *Client[L]) Signals(ctx context.Context, id string) ([]durably.SignalRecord, error) {
	var sigs []durably.SignalRecord
	err := c.do(ctx, http.MethodGet, "/signals", url.Values{"runId": {id}}, nil, &sigs)
	return sigs, err
}

// Children returns a run's children, oldest first (GET /children).
func (c *Client[L]) Children(ctx context.Context, id string) ([]*Run, error) {
	var wire []wireRun
	if err := c.do(ctx, http.MethodGet, "/children", url.Values{"runId": {id}}, nil, &wire); err != nil {
		return nil, err
	}
	runs := make([]*Run, len(wire))
	for i := range wire {
		runs[i] = wire[i].run()
	}
	return runs, nil
}

// Jobs lists the server's jobs and their schemas (GET /jobs).
func (c *Client[L]) Jobs(ctx context.Context) ([]durably.JobSchema, error) {
	var jobs []durably.JobSchema
	err := c.do(ctx, http.MethodGet, "/jobs", nil, nil, &jobs)
	return jobs, err
}

// Subscribe streams one run's events (GET /subscribe): its snapshot, then
// live events; the sequence ends after the run's last event, or with an
// error.
func (c *Client[L]) Subscribe(ctx context.Context, id string) iter.Seq2[durably.Event, error] {
	return c.stream(ctx, "/subscribe", url.Values{"runId": {id}})
}

// SubscribeRuns streams the events of many runs (GET /runs/subscribe) as
// projections (H-051) until ctx ends.
func (c *Client[L]) SubscribeRuns(ctx context.Context, jobNames []string, labels *L) iter.Seq2[durably.Event, error] {
	q := url.Values{}
	for _, j := range jobNames {
		q.Add("jobName", j)
	}
	if labels != nil {
		for k, v := range (*labels).ToMap() {
			q.Set("label."+k, v)
		}
	}
	return c.stream(ctx, "/runs/subscribe", q)
}

func (c *Client[L]) stream(ctx context.Context, path string, q url.Values) iter.Seq2[durably.Event, error] {
	return func(yield func(durably.Event, error) bool) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path+"?"+q.Encode(), nil)
		if err != nil {
			yield(durably.Event{}, err)
			return
		}
		req.Header.Set("Accept", "text/event-stream")
		if c.edit != nil {
			if err := c.edit(req); err != nil {
				yield(durably.Event{}, err)
				return
			}
		}
		res, err := c.hc.Do(req)
		if err != nil {
			yield(durably.Event{}, err)
			return
		}
		defer res.Body.Close()
		if res.StatusCode != http.StatusOK {
			data, _ := io.ReadAll(res.Body)
			yield(durably.Event{}, responseError(res.StatusCode, data))
			return
		}
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		for sc.Scan() {
			data, ok := strings.CutPrefix(sc.Text(), "data: ")
			if !ok {
				continue // blank separators and ": ping" comments
			}
			var ev durably.Event
			if err := json.Unmarshal([]byte(data), &ev); err != nil {
				if !yield(durably.Event{}, fmt.Errorf("durablyclient: malformed event %q: %w", data, err)) {
					return
				}
				continue
			}
			if !yield(ev, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil && ctx.Err() == nil {
			yield(durably.Event{}, err)
		}
	}
}

// RunError is a run that ended without output: it failed or was cancelled.
// errors.Is(err, durably.ErrCancelled) holds for a cancelled run.
type RunError struct {
	RunID   string
	Status  durably.Status
	Message string // the run's error, if any
}

func (e *RunError) Error() string {
	if e.Message != "" {
		return fmt.Sprintf("durably: run %s %s: %s", e.RunID, e.Status, e.Message)
	}
	return fmt.Sprintf("durably: run %s %s", e.RunID, e.Status)
}

// Is makes a cancelled run match durably.ErrCancelled.
func (e *RunError) Is(target error) bool {
	return target == durably.ErrCancelled && e.Status == durably.StatusCancelled
}

// Wait waits until the run ends and returns it as the server shows it
// then. It follows the run's event stream and, when the stream cannot be
// opened or breaks off, asks for the run every poll interval instead
// (WithPollInterval); ctx bounds the wait. A request that may succeed
// unchanged later (the server's 503 during a database outage, 429, a
// gateway's 502 or 504, a failed connection) is asked again at the next
// poll. A run that does not exist is durably.ErrNotFound; a failed or
// cancelled run is returned with a *RunError.
func (c *Client[L]) Wait(ctx context.Context, id string) (*Run, error) {
	streaming := true
	for {
		r, err := c.GetRun(ctx, id)
		if err != nil && (ctx.Err() != nil || !transient(err)) {
			return nil, err
		}
		if err != nil {
			if !c.sleep(ctx) {
				return nil, ctx.Err()
			}
			continue
		}
		if r == nil {
			return nil, &Error{Status: http.StatusNotFound, Message: "Run not found: " + id}
		}
		if r.Status.Terminal() {
			if r.Status != durably.StatusCompleted {
				return r, &RunError{RunID: r.ID, Status: r.Status, Message: r.Error}
			}
			return r, nil
		}
		if streaming {
			// The stream ends after the run's closing event; then the run
			// is read again for its final state. An error (an older server,
			// a proxy that cuts streams) turns to polling for good.
			// A stream that ends without the closing event counts as broken
			// too, so that a server cutting streams short cannot make this
			// loop spin.
			closed := false
			for ev, err := range c.Subscribe(ctx, id) {
				if err != nil || ev.Type.ClosesRun() {
					closed = err == nil
					break
				}
			}
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			if closed {
				continue
			}
			streaming = false
		}
		if !c.sleep(ctx) {
			return nil, ctx.Err()
		}
	}
}

// sleep waits one poll interval; false if ctx ended first.
func (c *Client[L]) sleep(ctx context.Context) bool {
	t := time.NewTimer(c.poll)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// transient reports whether a failed request may succeed unchanged later:
// the server's answer to a database outage (503), its rate limit (429), a
// gateway's (502, 504), or a connection that failed.
func transient(err error) bool {
	var e *Error
	if errors.As(err, &e) {
		switch e.Status {
		case http.StatusServiceUnavailable, http.StatusTooManyRequests, http.StatusBadGateway, http.StatusGatewayTimeout:
			return true
		}
		return false
	}
	var ue *url.Error // what http.Client.Do returns for a failed exchange
	return errors.As(err, &ue)
}

// WaitOutput waits for a run of job (Wait) and decodes its output into O:
// the typed clients' Wait methods. A run of another job is
// durably.ErrNotFound, as GetRun of a typed client sees it.
func WaitOutput[O any, L durably.Labels[L]](ctx context.Context, c *Client[L], id, job string) (O, error) {
	var out O
	r, err := c.Wait(ctx, id)
	if err != nil {
		return out, err
	}
	if r.JobName != job {
		return out, &Error{Status: http.StatusNotFound, Message: fmt.Sprintf("run %s is a run of job %q, not %q", id, r.JobName, job)}
	}
	if len(r.Output) > 0 {
		if err := json.Unmarshal(r.Output, &out); err != nil {
			return out, fmt.Errorf("durablyclient: output of run %s: %w", r.ID, err)
		}
	}
	return out, nil
}
