// Package durablyhttp serves a durably engine over Durably's own HTTP and
// Server-Sent Events protocol (http.md), so that existing clients, the
// unmodified @coji/durably-react hooks among them, work against a Go server.
//
// Mount it under any path. With net/http:
//
//	mux.Handle("/api/durably/", http.StripPrefix("/api/durably", h))
//
// with chi:
//
//	r.Mount("/api/durably", h)   // chi strips the mount path itself
//
// or let the handler strip it: Options.BasePath = "/api/durably".
//
// When the server shuts down, end the open event streams: register Close
// with http.Server.RegisterOnShutdown, so that the streams still served by
// their requests (HTTP/2) end and Shutdown can finish, and call the
// handler's Shutdown after http.Server.Shutdown returns:
//
//	srv.RegisterOnShutdown(h.Close)
//	...
//	err := srv.Shutdown(ctx)
//	err = errors.Join(err, h.Shutdown(ctx))
//
// Over HTTP/1.1 the handler takes the connections of GET /runs/subscribe
// streams over from net/http (http.Hijacker) once their headers are
// written, so that an idle stream holds neither a goroutine nor net/http's
// buffers: http.Server.Shutdown and Close no longer see those connections,
// and only the handler's Close or Shutdown ends them and waits for them.
//
// Event streams outlive http.Server.WriteTimeout (each replaces it with
// Options.StreamWriteTimeout per write) and, unlike other requests, hold
// their connection until the client leaves: bound them with
// Options.MaxStreams and Options.MaxStreamsPerPrincipal, and give the
// server a ReadHeaderTimeout, ReadTimeout and IdleTimeout.
package durablyhttp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/jsonappend"
)

// Options configure a Handler.
type Options[C any, L durably.Labels[L]] struct {
	// Auth, when set, authenticates every request and authorizes
	// operations. Without it every request is served.
	Auth *AuthConfig[C, L]
	// OnRequest runs on every request after authentication and before
	// routing (H-060), e.g. for lazy initialisation.
	OnRequest func(r *http.Request) error
	// BasePath is the prefix of the request path before the route (H-001);
	// a path that does not start with it is no route. Empty when the router
	// strips the mount path.
	BasePath string
	// SSEThrottle is the per-run interval of run:progress messages on an
	// event stream (H-053). Default 100ms; negative disables throttling.
	SSEThrottle time.Duration
	// Heartbeat is the interval of the comment lines that keep idle event
	// streams open through proxies. Default 15s; negative disables them.
	Heartbeat time.Duration
	// MaxBodyBytes bounds request bodies. Default 1 MiB.
	MaxBodyBytes int64
	// StreamBuffer bounds the messages an event stream holds for a slow
	// client; past it the stream is closed and the client, reconnecting,
	// gets a fresh snapshot. Default 1024.
	StreamBuffer int
	// StreamWriteTimeout bounds each write to an event stream, so that a
	// client that stopped reading is dropped once the socket's buffers are
	// full instead of holding its stream forever. It stands in for
	// http.Server.WriteTimeout, which event streams override because it
	// would end every stream at that age. Default 30s; negative: writes
	// wait as long as they must.
	StreamWriteTimeout time.Duration
	// MaxStreams bounds the event streams (GET /subscribe, GET
	// /runs/subscribe) open at once; past it a new stream is refused with
	// 429 and an {"error"} body. Each stream holds a connection and a few
	// KB (a stream of one run, or any stream over HTTP/2, also a
	// goroutine) until the client leaves. 0: no bound.
	MaxStreams int
	// MaxStreamsPerPrincipal bounds the event streams one principal, as
	// StreamPrincipal names it, has open at once; past it 429. 0: no
	// bound. It requires StreamPrincipal. A list stream whose client left
	// without a word (a page reload) keeps its slot until the handler
	// notices, within about a second, so leave a reloading page room: a
	// bound of 1 answers the reload's new stream with 429 in that second.
	MaxStreamsPerPrincipal int
	// StreamPrincipal names whose stream a request opens, for
	// MaxStreamsPerPrincipal: typically the user or tenant of the
	// authentication context. It runs after the route's hook allowed the
	// stream. auth is C's zero value when Auth is nil, so that such
	// handlers can key by r (say, a client address their proxy sets).
	StreamPrincipal func(r *http.Request, auth C) string
	// RetryAfter is the Retry-After of the answers that say "come back
	// later": 503 while the database is unavailable or the handler is
	// closing, 429 past a stream bound. Default 1s.
	RetryAfter time.Duration
	// Logger receives errors that are answered with a bare 500. Default
	// slog.Default().
	Logger *slog.Logger
	// Jobs, when set, are served at GET /jobs so that clients can discover
	// the jobs and their schemas (an addition to the original protocol;
	// generated handlers set it).
	Jobs []durably.JobSchema
}

// Handler serves the protocol. Create it with New.
type Handler[C any, L durably.Labels[L]] struct {
	e    *durably.Engine
	opts Options[C, L]

	closeOnce   sync.Once
	closing     context.Context // ended by Close
	endClosing  context.CancelFunc
	streamsMu   sync.Mutex // orders beginStream's Add before Close's Wait; guards the counts
	closed      bool
	open        int            // streams open
	byPrincipal map[string]int // streams open per principal, when bounded
	streams     sync.WaitGroup
	hub         hub

	// lastUnavailableLog (unix nanoseconds) spaces the log lines of 503s:
	// an outage answers every request with one, and says so once.
	lastUnavailableLog atomic.Int64
}

// New returns a handler for e. Configuring Auth without Authenticate is an
// error (H-061).
func New[C any, L durably.Labels[L]](e *durably.Engine, opts Options[C, L]) (*Handler[C, L], error) {
	if opts.Auth != nil && opts.Auth.Authenticate == nil {
		return nil, errors.New("createDurablyHandler: auth.authenticate is required when auth is provided")
	}
	if opts.SSEThrottle == 0 {
		opts.SSEThrottle = 100 * time.Millisecond
	}
	if opts.Heartbeat == 0 {
		opts.Heartbeat = 15 * time.Second
	}
	if opts.MaxBodyBytes <= 0 {
		opts.MaxBodyBytes = 1 << 20
	}
	if opts.StreamBuffer <= 0 {
		opts.StreamBuffer = 1024
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.StreamWriteTimeout == 0 {
		opts.StreamWriteTimeout = 30 * time.Second
	}
	if opts.RetryAfter <= 0 {
		opts.RetryAfter = time.Second
	}
	if opts.MaxStreamsPerPrincipal > 0 && opts.StreamPrincipal == nil {
		return nil, errors.New("durablyhttp: Options.MaxStreamsPerPrincipal is set but StreamPrincipal is nil: say how to tell principals apart")
	}
	h := &Handler[C, L]{e: e, opts: opts, byPrincipal: map[string]int{}}
	h.closing, h.endClosing = context.WithCancel(context.Background())
	return h, nil
}

// Close ends every open event stream and makes new ones end at once. It
// returns when the streams have ended; Shutdown is the same, bounded by a
// context.
func (h *Handler[C, L]) Close() {
	h.beginClose()
	h.streams.Wait()
}

// Shutdown ends every open event stream, makes new ones end at once, and
// waits until the streams have ended or ctx is done, when it returns ctx's
// error. Call it after http.Server.Shutdown: the server no longer sees
// the streams the handler took over, and does not wait for the functions
// of RegisterOnShutdown.
func (h *Handler[C, L]) Shutdown(ctx context.Context) error {
	h.beginClose()
	ended := make(chan struct{})
	go func() { // ends with the last stream, bounded by StreamWriteTimeout
		h.streams.Wait()
		close(ended)
	}()
	select {
	case <-ended:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (h *Handler[C, L]) beginClose() {
	h.closeOnce.Do(func() {
		h.streamsMu.Lock()
		h.closed = true
		h.streamsMu.Unlock()
		h.endClosing()
	})
}

// request is one request's state through the pipeline of H-060.
type request[C any] struct {
	w      http.ResponseWriter
	r      *http.Request
	auth   C
	authed bool // hooks run only with an authentication context
}

// ServeHTTP runs authenticate → onRequest → routing → validation → hook →
// operation (H-060).
func (h *Handler[C, L]) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path, ok := strings.CutPrefix(r.URL.Path, h.opts.BasePath)
	if !ok {
		path = "" // no route: a 404 once the request is authenticated (H-003)
	}
	h.serve(w, r, path)
}

// serve answers a request for path, the route inside the handler.
func (h *Handler[C, L]) serve(w http.ResponseWriter, r *http.Request, path string) {
	req, ok := h.admit(w, r)
	if !ok {
		return
	}
	switch {
	case r.Method == http.MethodPost && path == "/trigger":
		h.trigger(req)
	case r.Method == http.MethodGet && path == "/runs":
		h.listRuns(req)
	case r.Method == http.MethodGet && path == "/runs/counts":
		h.countRuns(req)
	case r.Method == http.MethodGet && path == "/run":
		h.withRun(req, OpRead, h.getRun)
	case r.Method == http.MethodGet && path == "/steps":
		h.withRun(req, OpSteps, h.getSteps)
	case r.Method == http.MethodGet && path == "/logs":
		h.withRun(req, OpSteps, h.getLogs)
	case r.Method == http.MethodPost && path == "/retrigger":
		h.withRun(req, OpRetrigger, h.retrigger)
	case r.Method == http.MethodPost && path == "/resume":
		h.withRun(req, OpResume, h.resume)
	case r.Method == http.MethodPost && path == "/cancel":
		h.withRun(req, OpCancel, h.cancel)
	case r.Method == http.MethodDelete && path == "/run":
		h.withRun(req, OpDelete, h.deleteRun)
	case r.Method == http.MethodPost && path == "/signal":
		h.withRun(req, OpSignal, h.signal)
	case r.Method == http.MethodGet && path == "/signals":
		h.withRun(req, OpSteps, h.getSignals)
	case r.Method == http.MethodGet && path == "/children":
		h.withRun(req, OpRead, h.getChildren)
	case r.Method == http.MethodGet && path == "/subscribe":
		h.withRun(req, OpSubscribe, h.subscribe)
	case r.Method == http.MethodGet && path == "/runs/subscribe":
		h.subscribeRuns(req)
	case r.Method == http.MethodGet && path == "/jobs" && h.opts.Jobs != nil:
		h.listJobs(req)
	default:
		notFound(w)
	}
}

// admit authenticates a request and runs OnRequest, the first two stages
// of H-060, which every request of the handler and of its dashboard
// passes. It answers the request itself and reports false when either
// refuses.
func (h *Handler[C, L]) admit(w http.ResponseWriter, r *http.Request) (*request[C], bool) {
	req := &request[C]{w: w, r: r}
	if a := h.opts.Auth; a != nil {
		c, err := a.Authenticate(r)
		if err != nil {
			h.fail(req, err)
			return nil, false
		}
		req.auth, req.authed = c, true
	}
	if h.opts.OnRequest != nil {
		if err := h.opts.OnRequest(r); err != nil {
			h.fail(req, err)
			return nil, false
		}
	}
	return req, true
}

// notFound is the one error of the handler that is not {"error"} JSON: the
// protocol fixes it as plain text (H-003), and a wrong method on a known
// route is this 404 too, not a 405.
func notFound(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusNotFound)
	_, _ = io.WriteString(w, "Not Found")
}

// fail answers an error: a hook's rejection verbatim, an unavailable
// database with 503, an engine error with its status, anything else with a
// 500 that keeps its text in the log.
func (h *Handler[C, L]) fail(req *request[C], err error) {
	var rej *Rejection
	if errors.As(err, &rej) {
		ct := rej.ContentType
		if ct == "" {
			ct = "text/plain; charset=utf-8"
		}
		status := rej.Status
		if status < 100 || status > 599 {
			// net/http panics on a status outside 1xx–5xx: a hook's bug,
			// answered as one.
			h.opts.Logger.Error("durably: a hook rejected a request with an invalid HTTP status; answering 500", "status", status)
			status = http.StatusInternalServerError
		}
		req.w.Header().Set("Content-Type", ct)
		req.w.WriteHeader(status)
		_, _ = io.WriteString(req.w, rej.Body)
		return
	}
	if errors.Is(err, durably.ErrUnavailable) {
		h.unavailable(req, err)
		return
	}
	var de *durably.Error
	if errors.As(err, &de) {
		writeError(req.w, durably.StatusCode(err), de.Msg)
		return
	}
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(req.w, http.StatusRequestEntityTooLarge, fmt.Sprintf("request body too large (limit %d bytes)", tooBig.Limit))
		return
	}
	h.opts.Logger.Error("durably http: request failed", "method", req.r.Method, "path", req.r.URL.Path, "err", err)
	writeError(req.w, http.StatusInternalServerError, "Internal Server Error")
}

// unavailableLogEvery spaces the log lines of an outage's 503s.
const unavailableLogEvery = 10 * time.Second

// unavailable answers 503 with Retry-After (issue 12 item 2): the database
// is down or refusing work for now, and the request may simply be sent
// again. The store's text stays in the log: it may name hosts and users.
func (h *Handler[C, L]) unavailable(req *request[C], err error) {
	now := time.Now().UnixNano()
	if last := h.lastUnavailableLog.Load(); now-last >= int64(unavailableLogEvery) && h.lastUnavailableLog.CompareAndSwap(last, now) {
		h.opts.Logger.Warn("durably http: database unavailable, answering 503", "method", req.r.Method, "path", req.r.URL.Path, "err", err)
	}
	h.retryLater(req.w, http.StatusServiceUnavailable, "Service Unavailable: the database cannot be reached; retry later")
}

// retryLater answers a status that says "come back later", with the
// handler's Retry-After.
func (h *Handler[C, L]) retryLater(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Retry-After", strconv.Itoa(int((h.opts.RetryAfter+time.Second-1)/time.Second)))
	writeError(w, status, msg)
}

// writeError answers {"error": msg}: the one shape of every error the
// handler makes itself (H-011).
func writeError(w http.ResponseWriter, status int, msg string) {
	b := appendJSONObjectString(nil, "error", msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

func writeJSON(w http.ResponseWriter, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
}

// hooksOn reports whether hooks run: only with Auth and a context (H-061).
func (h *Handler[C, L]) hooksOn(req *request[C]) bool { return h.opts.Auth != nil && req.authed }

// triggerBody is what POST /trigger reads; members of the wrong type are
// reported by name (D2). Other members are ignored (H-022).
type triggerBody struct {
	JobName        json.RawMessage `json:"jobName"`
	Input          json.RawMessage `json:"input"`
	IdempotencyKey json.RawMessage `json:"idempotencyKey"`
	ConcurrencyKey json.RawMessage `json:"concurrencyKey"`
	Labels         json.RawMessage `json:"labels"`
	Coalesce       json.RawMessage `json:"coalesce"`
	// Additive members of durably-go, absent from the original.
	RunAt    json.RawMessage `json:"runAt"`
	DelayMs  json.RawMessage `json:"delayMs"`
	Priority json.RawMessage `json:"priority"`
}

// trigger answers POST /trigger: the body read and checked, the OnTrigger
// hook, then the engine's trigger.
func (h *Handler[C, L]) trigger(req *request[C]) {
	tr, err := h.readTrigger(req)
	if err == nil && h.hooksOn(req) && h.opts.Auth.OnTrigger != nil {
		err = h.opts.Auth.OnTrigger(req.r.Context(), req.auth, tr) // D8: it may change the request
	}
	var res *durably.TriggerResult
	if err == nil {
		res, err = h.e.TriggerRaw(req.r.Context(), engineRequest(tr))
	}
	if err != nil {
		h.fail(req, err)
		return
	}
	b := []byte(`{"runId":`)
	b = appendString(b, res.Run.ID)
	b = append(b, `,"disposition":`...)
	b = appendString(b, string(res.Disposition))
	writeJSON(req.w, append(b, '}'))
}

// readTrigger reads a trigger's body into the request its hook sees, in
// this order: the JSON, jobName (H-031), the job (H-032), then the other
// members. A refusal is a *durably.Error naming the member.
func (h *Handler[C, L]) readTrigger(req *request[C]) (*TriggerRequest[L], error) {
	body, err := io.ReadAll(http.MaxBytesReader(req.w, req.r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		return nil, err
	}
	tb, err := decodeTriggerBody(body)
	if err != nil {
		return nil, err
	}
	jobName, err := optionalString(tb.JobName, "jobName")
	switch {
	case err != nil:
		return nil, invalid(err.Error())
	case jobName == "":
		return nil, invalid("jobName is required") // H-031
	case !h.e.HasJob(jobName):
		return nil, &durably.Error{Kind: durably.ErrNotFound, Msg: "Job not found: " + jobName} // H-032
	}
	tr := &TriggerRequest[L]{JobName: jobName, Input: tb.Input}
	for _, f := range []struct {
		raw  json.RawMessage
		name string
		dst  *string
	}{
		{tb.IdempotencyKey, "idempotencyKey", &tr.IdempotencyKey},
		{tb.ConcurrencyKey, "concurrencyKey", &tr.ConcurrencyKey},
		{tb.Coalesce, "coalesce", &tr.Coalesce},
	} {
		if *f.dst, err = optionalString(f.raw, f.name); err != nil {
			return nil, invalid(err.Error())
		}
	}
	if err := readSchedule(tb, tr); err != nil {
		return nil, invalid(err.Error())
	}
	if tr.Labels, err = readLabels[L](tb.Labels); err != nil {
		return nil, err
	}
	return tr, nil
}

// decodeTriggerBody reads a trigger's JSON, which must be an object.
func decodeTriggerBody(body []byte) (triggerBody, error) {
	var tb triggerBody
	if err := json.Unmarshal(body, &tb); err != nil {
		msg := strings.TrimPrefix(err.Error(), "json: ")
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) && te.Field == "" {
			msg = "expected an object" // not the name of the Go type it would fill
		}
		return tb, invalid("Invalid JSON body: " + msg)
	}
	if isNull(body) {
		return tb, invalid("Invalid JSON body: expected an object")
	}
	return tb, nil
}

// readLabels reads a trigger's labels member: nil when absent or null.
func readLabels[L durably.Labels[L]](raw json.RawMessage) (*L, error) {
	if len(raw) == 0 || isNull(raw) {
		return nil, nil
	}
	var m map[string]string
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, invalid("labels must be an object of strings")
	}
	var zero L
	l, err := zero.FromMap(m)
	if err != nil {
		return nil, invalid("labels: " + err.Error())
	}
	return &l, nil
}

// engineRequest is the trigger the hook let through, as the engine takes it.
func engineRequest[L durably.Labels[L]](tr *TriggerRequest[L]) durably.TriggerRequest {
	raw := durably.TriggerRequest{
		JobName: tr.JobName, Input: tr.Input, IdempotencyKey: tr.IdempotencyKey,
		ConcurrencyKey: tr.ConcurrencyKey, Coalesce: tr.Coalesce,
		RunAt: tr.RunAt, Delay: tr.Delay, Priority: tr.Priority,
	}
	if tr.Labels != nil {
		raw.Labels = (*tr.Labels).ToMap()
	}
	return raw
}

// invalid is a 400 answering msg (H-011).
func invalid(msg string) error { return &durably.Error{Kind: durably.ErrValidation, Msg: msg} }

func isNull(raw []byte) bool { return strings.TrimSpace(string(raw)) == "null" }

// maxDelayMs is the longest delay a time.Duration holds, in milliseconds.
const maxDelayMs = math.MaxInt64 / int64(time.Millisecond)

// readSchedule reads the additive members runAt (an RFC 3339 string),
// delayMs (a non-negative integer) and priority (a 32-bit integer), each
// optional, null meaning absent; an error names the member (R-207, D2).
func readSchedule[L any](tb triggerBody, tr *TriggerRequest[L]) error {
	present := len(tb.RunAt) > 0 && !isNull(tb.RunAt) // absent is null or left out
	if s, err := optionalString(tb.RunAt, "runAt"); err != nil || (present && s == "") {
		return fmt.Errorf("runAt must be an RFC 3339 time string")
	} else if s != "" {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return fmt.Errorf("runAt must be an RFC 3339 time string, got %q", s)
		}
		tr.RunAt = t
	}
	if len(tb.DelayMs) > 0 && !isNull(tb.DelayMs) {
		var n int64
		if err := json.Unmarshal(tb.DelayMs, &n); err != nil || n < 0 || n > maxDelayMs {
			return fmt.Errorf("delayMs must be a non-negative integer of at most %d", maxDelayMs)
		}
		tr.Delay = time.Duration(n) * time.Millisecond
	}
	if len(tb.Priority) > 0 && !isNull(tb.Priority) {
		var n int32
		if err := json.Unmarshal(tb.Priority, &n); err != nil {
			return fmt.Errorf("priority must be an integer between %d and %d", math.MinInt32, math.MaxInt32)
		}
		p := int(n)
		tr.Priority = &p
	}
	return nil
}

// optionalString reads a member that must be a string when present.
func optionalString(raw json.RawMessage, name string) (string, error) {
	if len(raw) == 0 || isNull(raw) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("%s must be a string", name)
	}
	return s, nil
}

// listRuns serves GET /runs (H-036 … H-040), with durably-go's additive
// parameters createdFrom, createdTo and after (issue 21).
func (h *Handler[C, L]) listRuns(req *request[C]) {
	filter, hasLimit, ok := h.runsFilter(req)
	if !ok {
		return
	}
	if hasLimit && filter.Limit == 0 {
		writeJSON(req.w, []byte("[]")) // limit=0 returns [] (H-038)
		return
	}
	runs, err := h.e.ListRuns(req.r.Context(), engineFilter(filter))
	if err != nil {
		h.fail(req, err)
		return
	}
	writeJSON(req.w, appendArray(make([]byte, 0, 256*len(runs)+2), runs, appendClientRun))
}

// countRuns serves GET /runs/counts, an addition of durably-go (issue 21):
// the runs per status under the filter of GET /runs, scoped by ScopeRuns
// like the list; status, after, limit and offset are read but do not
// narrow the counts.
func (h *Handler[C, L]) countRuns(req *request[C]) {
	filter, _, ok := h.runsFilter(req)
	if !ok {
		return
	}
	counts, err := h.e.CountRuns(req.r.Context(), engineFilter(filter))
	if err != nil {
		h.fail(req, err)
		return
	}
	w := jsonappend.Writer{B: []byte{'{'}}
	for _, st := range statuses {
		w.Int(string(st), int64(counts[st]))
	}
	writeJSON(req.w, append(w.B, '}'))
}

// statuses are the run statuses in the protocol's order.
var statuses = []durably.Status{durably.StatusPending, durably.StatusLeased, durably.StatusCompleted, durably.StatusFailed, durably.StatusCancelled}

// runsFilter reads the query of GET /runs and applies ScopeRuns. A bad
// parameter is answered with a 400 naming it, a refusal of the hook as
// the hook says; either way it reports false.
func (h *Handler[C, L]) runsFilter(req *request[C]) (filter RunsFilter[L], hasLimit, ok bool) {
	q := req.r.URL.Query()
	filter.JobNames = q["jobName"]
	for _, s := range q["status"] {
		if s == "" {
			writeError(req.w, http.StatusBadRequest, "Invalid status: empty value. Must be one of: pending, leased, completed, failed, cancelled")
			return filter, false, false
		}
		st := durably.Status(s)
		if !st.Valid() {
			writeError(req.w, http.StatusBadRequest, "Invalid status: "+s+". Must be one of: pending, leased, completed, failed, cancelled")
			return filter, false, false
		}
		filter.Statuses = append(filter.Statuses, st)
	}
	var err error
	if v := q.Get("limit"); v != "" {
		if filter.Limit, err = nonNegative(v); err != nil {
			writeError(req.w, http.StatusBadRequest, "Invalid limit: must be a non-negative integer")
			return filter, false, false
		}
		hasLimit = true
	}
	if v := q.Get("offset"); v != "" {
		if filter.Offset, err = nonNegative(v); err != nil {
			writeError(req.w, http.StatusBadRequest, "Invalid offset: must be a non-negative integer")
			return filter, false, false
		}
	}
	if err := readWindow(q, &filter.CreatedFrom, &filter.CreatedTo, &filter.After); err != nil {
		writeError(req.w, http.StatusBadRequest, err.Error())
		return filter, false, false
	}
	if filter.Labels, err = labelsFromQuery[L](req.r); err != nil {
		writeError(req.w, http.StatusBadRequest, err.Error())
		return filter, false, false
	}
	if h.hooksOn(req) && h.opts.Auth.ScopeRuns != nil {
		if filter, err = h.opts.Auth.ScopeRuns(req.r.Context(), req.auth, filter); err != nil {
			h.fail(req, err)
			return filter, false, false
		}
	}
	return filter, hasLimit, true
}

// readWindow reads the additive parameters createdFrom and createdTo (RFC
// 3339 times) and after (the createdAt and id of a page's last run, as
// "<createdAt>,<id>"), each optional.
func readWindow(q url.Values, from, to *time.Time, after **durably.RunCursor) error {
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"createdFrom", from}, {"createdTo", to}} {
		if v := q.Get(p.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				//lint:ignore ST1005 the protocol's 400 messages begin "Invalid", as the original's do
				return fmt.Errorf("Invalid %s: must be an RFC 3339 time, got %q", p.name, v)
			}
			*p.dst = t
		}
	}
	if v := q.Get("after"); v != "" {
		at, id, found := strings.Cut(v, ",")
		t, err := time.Parse(time.RFC3339Nano, at)
		if !found || id == "" || err != nil {
			//lint:ignore ST1005 the protocol's 400 messages begin "Invalid", as the original's do
			return fmt.Errorf("Invalid after: must be the createdAt and id of a run, as <createdAt>,<id>, got %q", v)
		}
		*after = &durably.RunCursor{CreatedAt: t, ID: id}
	}
	return nil
}

// nonNegative parses a base-10 non-negative integer; unlike the original's
// parseInt it refuses trailing garbage such as "10abc" (H-038 allows this).
func nonNegative(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 {
		return 0, errors.New("not a non-negative integer")
	}
	return n, nil
}

// labelsFromQuery reads label.<key>=<value> parameters; a repeated key keeps
// the last value (H-036).
func labelsFromQuery[L durably.Labels[L]](r *http.Request) (L, error) {
	m := map[string]string{}
	for k, vs := range r.URL.Query() {
		if key, ok := strings.CutPrefix(k, "label."); ok {
			m[key] = vs[len(vs)-1]
		}
	}
	var zero L
	if len(m) == 0 {
		// Not L's zero value: for MapLabels that is a nil map, and a
		// ScopeRuns hook that sets a label on it would panic.
		return zero.FromMap(m)
	}
	if err := durably.CheckLabelKeys(m); err != nil {
		return zero, err
	}
	l, err := zero.FromMap(m)
	if err != nil {
		return zero, fmt.Errorf("labels: %w", err)
	}
	return l, nil
}

// withRun does the checks of H-014 and the access hook of H-063, then op.
func (h *Handler[C, L]) withRun(req *request[C], op Operation, then func(*request[C], *durably.Run)) {
	id := req.r.URL.Query().Get("runId")
	if id == "" {
		writeError(req.w, http.StatusBadRequest, "runId query parameter is required")
		return
	}
	run, err := h.e.GetRun(req.r.Context(), id)
	if err != nil {
		h.fail(req, err)
		return
	}
	if run == nil {
		writeError(req.w, http.StatusNotFound, "Run not found")
		return
	}
	if h.hooksOn(req) && h.opts.Auth.OnRunAccess != nil {
		var zero L
		labels, err := zero.FromMap(run.Labels)
		if err != nil {
			h.fail(req, fmt.Errorf("run %s has labels its type cannot hold: %w", run.ID, err))
			return
		}
		// Unlike the original (H-046), an engine error from the hook on the
		// subscribe route keeps its status, as on every other route (H-065).
		if err := h.opts.Auth.OnRunAccess(req.r.Context(), req.auth, &Run[L]{Run: run, Labels: labels}, op); err != nil {
			h.fail(req, err)
			return
		}
	}
	then(req, run)
}

func (h *Handler[C, L]) getRun(req *request[C], run *durably.Run) {
	writeJSON(req.w, appendClientRun(nil, run))
}

func (h *Handler[C, L]) getSteps(req *request[C], run *durably.Run) {
	steps, err := h.e.GetSteps(req.r.Context(), run.ID)
	if err != nil {
		h.fail(req, err)
		return
	}
	writeJSON(req.w, appendArray(nil, steps, appendStep))
}

// getLogs serves GET /logs, an addition of durably-go (issue 21): the
// run's persisted logs in order, guarded by OnRunAccess as OpSteps.
func (h *Handler[C, L]) getLogs(req *request[C], run *durably.Run) {
	logs, err := h.e.GetLogs(req.r.Context(), run.ID)
	if err != nil {
		h.fail(req, err)
		return
	}
	writeJSON(req.w, appendArray(nil, logs, appendLog))
}

func (h *Handler[C, L]) retrigger(req *request[C], run *durably.Run) {
	fresh, err := h.e.Retrigger(req.r.Context(), run.ID)
	h.answerRun(req, fresh, err)
}

// answerRun answers a run action that names a run (H-077, H-120): the
// error, or {"success":true,"runId"}.
func (h *Handler[C, L]) answerRun(req *request[C], run *durably.Run, err error) {
	if err != nil {
		h.fail(req, err)
		return
	}
	b := appendString([]byte(`{"success":true,"runId":`), run.ID)
	writeJSON(req.w, append(b, '}'))
}

// resume serves POST /resume, an addition of durably-go (H-120): the run
// goes on from its first unfinished step; the answer names it as
// /retrigger names its new run.
func (h *Handler[C, L]) resume(req *request[C], run *durably.Run) {
	resumed, err := h.e.Resume(req.r.Context(), run.ID)
	h.answerRun(req, resumed, err)
}

func (h *Handler[C, L]) cancel(req *request[C], run *durably.Run) {
	if err := h.e.Cancel(req.r.Context(), run.ID); err != nil {
		h.fail(req, err)
		return
	}
	writeJSON(req.w, []byte(`{"success":true}`))
}

// signalBody is what POST /signal reads: the signal's name and its
// payload, any JSON; members of the wrong type are reported by name.
type signalBody struct {
	Name    json.RawMessage `json:"name"`
	Payload json.RawMessage `json:"payload"`
}

// signal serves POST /signal?runId=, an addition of durably-go: the
// signal is validated against the run's job's declaration and kept for the
// run (Engine.Signal).
func (h *Handler[C, L]) signal(req *request[C], run *durably.Run) {
	body, err := io.ReadAll(http.MaxBytesReader(req.w, req.r.Body, h.opts.MaxBodyBytes))
	if err != nil {
		h.fail(req, err)
		return
	}
	var sb signalBody
	if err := json.Unmarshal(body, &sb); err != nil || isNull(body) {
		writeError(req.w, http.StatusBadRequest, "Invalid JSON body: expected an object with name and payload")
		return
	}
	name, err := optionalString(sb.Name, "name")
	if err != nil {
		writeError(req.w, http.StatusBadRequest, err.Error())
		return
	}
	if name == "" {
		writeError(req.w, http.StatusBadRequest, "name is required")
		return
	}
	if err := h.e.Signal(req.r.Context(), run.ID, name, sb.Payload); err != nil {
		h.fail(req, err)
		return
	}
	writeJSON(req.w, []byte(`{"success":true}`))
}

// getSignals serves GET /signals, an addition of durably-go: the
// signals kept for the run, oldest first; none once it ended.
func (h *Handler[C, L]) getSignals(req *request[C], run *durably.Run) {
	sigs, err := h.e.GetSignals(req.r.Context(), run.ID)
	if err != nil {
		h.fail(req, err)
		return
	}
	writeJSON(req.w, appendArray(nil, sigs, AppendSignal))
}

// getChildren serves GET /children, an addition of durably-go: the
// run's children, oldest first, in the run shape.
func (h *Handler[C, L]) getChildren(req *request[C], run *durably.Run) {
	kids, err := h.e.GetChildren(req.r.Context(), run.ID)
	if err != nil {
		h.fail(req, err)
		return
	}
	writeJSON(req.w, appendArray(make([]byte, 0, 256*len(kids)+2), kids, appendClientRun))
}

func (h *Handler[C, L]) deleteRun(req *request[C], run *durably.Run) {
	if err := h.e.DeleteRun(req.r.Context(), run.ID); err != nil {
		h.fail(req, err)
		return
	}
	writeJSON(req.w, []byte(`{"success":true}`))
}

// beginStream counts a stream, which Close waits for and the stream bounds
// limit, and gives it a context that ends when the client goes away or the
// handler closes. After Close it answers 503, past a bound 429, and
// reports false.
func (h *Handler[C, L]) beginStream(req *request[C]) (context.Context, func(), bool) {
	perPrincipal := h.opts.MaxStreamsPerPrincipal > 0
	var principal string
	if perPrincipal {
		principal = h.opts.StreamPrincipal(req.r, req.auth)
	}
	h.streamsMu.Lock()
	switch {
	case h.closed:
		h.streamsMu.Unlock()
		h.retryLater(req.w, http.StatusServiceUnavailable, "server is shutting down")
		return nil, nil, false
	case h.opts.MaxStreams > 0 && h.open >= h.opts.MaxStreams:
		h.streamsMu.Unlock()
		h.retryLater(req.w, http.StatusTooManyRequests, fmt.Sprintf("Too many open event streams (limit %d)", h.opts.MaxStreams))
		return nil, nil, false
	case perPrincipal && h.byPrincipal[principal] >= h.opts.MaxStreamsPerPrincipal:
		h.streamsMu.Unlock()
		h.retryLater(req.w, http.StatusTooManyRequests, fmt.Sprintf("Too many open event streams for this client (limit %d)", h.opts.MaxStreamsPerPrincipal))
		return nil, nil, false
	}
	h.open++
	if perPrincipal {
		h.byPrincipal[principal]++
	}
	h.streams.Add(1)
	h.streamsMu.Unlock()
	ctx, cancel := context.WithCancel(req.r.Context())
	// Not a goroutine per stream that waits for either: with a thousand
	// streams, their stacks were a tenth of the server's memory.
	stopClosing := context.AfterFunc(h.closing, cancel)
	end := func() {
		stopClosing()
		cancel()
		h.streamsMu.Lock()
		h.open--
		if perPrincipal {
			if n := h.byPrincipal[principal] - 1; n > 0 {
				h.byPrincipal[principal] = n
			} else {
				delete(h.byPrincipal, principal)
			}
		}
		h.streamsMu.Unlock()
		h.streams.Done()
	}
	return ctx, end, true
}

// OpenStreams reports how many event streams are open now.
func (h *Handler[C, L]) OpenStreams() int {
	h.streamsMu.Lock()
	defer h.streamsMu.Unlock()
	return h.open
}

// listJobs serves GET /jobs: the jobs and their JSON Schemas, their
// schedules, and how the engine retries, orders and limits their runs.
func (h *Handler[C, L]) listJobs(req *request[C]) {
	schedules := h.e.Schedules()
	jobs := make([]jobWire, len(h.opts.Jobs))
	for i, schema := range h.opts.Jobs {
		jobs[i].JobSchema = schema
		for _, s := range schedules {
			if s.JobName == schema.Name {
				// A copy: the caller's slice may have room, which
				// concurrent requests would share.
				jobs[i].Schedules = append(slices.Clip(jobs[i].Schedules), s)
			}
		}
		if settings, ok := h.e.JobSettings(schema.Name); ok {
			jobs[i].Priority, jobs[i].MaxRunning, jobs[i].MaxRunningPerTenant = settings.Priority, settings.MaxRunning, settings.MaxRunningPerTenant
			jobs[i].TimeoutMs, jobs[i].StepTimeoutMs = settings.Timeout.Milliseconds(), settings.StepTimeout.Milliseconds()
			if p := settings.Retry; p != nil {
				jobs[i].Retry = &retryWire{MaxAttempts: p.MaxAttempts, Backoff: string(p.Backoff),
					InitialMs: p.Initial.Milliseconds(), MaxMs: p.Max.Milliseconds(), Jitter: p.Jitter}
			}
		}
	}
	b, err := json.Marshal(jobs)
	if err != nil {
		h.fail(req, err)
		return
	}
	writeJSON(req.w, b)
}

// jobWire is a job as GET /jobs serves it: the JobSchema the handler was
// given, with the additive members priority, maxRunning, retry
// (durably.JobSettings; issue 21), maxRunningPerTenant, timeoutMs and
// stepTimeoutMs (issue 19).
type jobWire struct {
	durably.JobSchema
	Priority            int        `json:"priority"`
	MaxRunning          int        `json:"maxRunning,omitempty"`          // 0: no limit
	MaxRunningPerTenant int        `json:"maxRunningPerTenant,omitempty"` // 0: no limit
	TimeoutMs           int64      `json:"timeoutMs,omitempty"`           // 0: no bound
	StepTimeoutMs       int64      `json:"stepTimeoutMs,omitempty"`       // 0: no bound
	Retry               *retryWire `json:"retry,omitempty"`
}

// retryWire is a durably.RetryPolicy on the wire, its durations in
// milliseconds.
type retryWire struct {
	MaxAttempts int     `json:"maxAttempts"`
	Backoff     string  `json:"backoff"`
	InitialMs   int64   `json:"initialMs"`
	MaxMs       int64   `json:"maxMs,omitempty"` // 0: no cap
	Jitter      float64 `json:"jitter,omitempty"`
}

func (h *Handler[C, L]) engine() *durably.Engine { return h.e }

func (h *Handler[C, L]) done() <-chan struct{} { return h.closing.Done() }

func (h *Handler[C, L]) heartbeatEvery() time.Duration { return h.opts.Heartbeat }
