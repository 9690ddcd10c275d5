package durably

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"strings"
	"time"
)

// JobFunc is the body of a job. It runs once per execution of a run; its
// durable work goes through RunStep on s, and ctx ends when the run is
// cancelled, its lease is lost or the engine stops (D9).
type JobFunc[I, O any] func(ctx context.Context, s *StepContext, input I) (O, error)

// Job defines a job: a name, a typed body, and optional validation.
// Register it with an engine to get a typed handle.
type Job[I, O any] struct {
	// Name identifies the job in storage and on the wire: at most
	// MaxJobNameBytes of UTF-8 (docs/limits.md).
	Name string
	// Run is the job's body.
	Run JobFunc[I, O]
	// ValidateInput, if set, checks an input before anything is written
	// . Its error message becomes "Invalid input: <message>".
	ValidateInput func(input *I) error
	// ValidateOutput, if set, checks the body's result before the run is
	// completed; a failure fails the run with "Invalid output: <message>"
	//
	ValidateOutput func(output *O) error
	// InputSchema and OutputSchema, if set, validate the JSON form
	// (generated code plugs JSON Schemas in here).
	InputSchema  JSONValidator
	OutputSchema JSONValidator
	// Retry, if set, retries the job's failing steps (unless a step has
	// its own WithStepRetry) and a body failing outside any step.
	Retry *RetryPolicy

	// Priority is the default priority of the job's runs (WithPriority
	// overrides it per trigger): a smaller number is claimed first. 0 by
	// default.
	Priority int
	// MaxRunning, if positive, is the most runs of this job leased at once
	// across every process sharing the database (the store enforces it on
	// PostgreSQL across processes, on SQLite by its single writer). Runs
	// beyond it wait pending, without holding a worker slot, and do not
	// hold up runs of other jobs. Every process registering the job should
	// declare the same limit: a process claims under the limit it knows.
	MaxRunning int
	// MaxRunningPerTenant, if positive, is the most runs of this job leased
	// at once per tenant: per key scope, the values of Config.TenantLabels
	// (D11; without tenant labels every run is in one scope, and it acts as
	// MaxRunning). A tenant at its limit is passed over by claims, so its
	// backlog, however urgent its priority, never holds up other tenants'
	// runs: with fewer per-tenant slots than the fleet has slots, another
	// tenant's run waits at most until one of the other slots frees. Like
	// MaxRunning it holds across processes and counts live leases.
	MaxRunningPerTenant int

	// Timeout, if positive, bounds a run from its first start to its end,
	// waits (retries, sleeps) included: past it, the run's context ends
	// with an ErrDeadline error and the run fails, never retried; a body
	// that does not return within a second of the deadline is abandoned
	// (its goroutine goes on, but nothing it writes is recorded) and its
	// slot freed. The lease is not renewed past the deadline, so a hung
	// process loses the run to another, which fails it.
	Timeout time.Duration
	// Signals are the signals the job's runs may wait for (WaitForSignal)
	// and be sent (Engine.Signal): a Signal[P] each, its payload checked
	// against P and its schema before it is kept.
	Signals []SignalDecl
	// StepTimeout, if positive, bounds each attempt of each of the job's
	// steps (WithStepTimeout overrides it per step): past it, the step's
	// context ends with an ErrDeadline error and the attempt fails, retried
	// under the step's policy like any failure. A step function that does
	// not return within a second of its deadline is abandoned as above.
	StepTimeout time.Duration
}

// JSONValidator validates a JSON document, returning an error that names
// the offending field.
type JSONValidator interface {
	ValidateJSON(doc json.RawMessage) error
}

// jobEntry is a registered job with its types erased, as the worker and the
// HTTP handler see it.
type jobEntry struct {
	name string
	def  any // the *Job[I, O] registered, for R-021's identity check
	// parseInput decodes raw strictly, validates it and returns its
	// canonical JSON, the "parsed" input that is stored.
	parseInput func(raw json.RawMessage) (json.RawMessage, error)
	// execute runs the body on a stored input and returns the output JSON.
	execute func(ctx context.Context, s *StepContext, input json.RawMessage) (json.RawMessage, error)
	handle  any
	retry   *RetryPolicy // a copy of Job.Retry taken at Register
	// priority, maxRunning and perTenant are Job.Priority, Job.MaxRunning
	// and Job.MaxRunningPerTenant.
	priority, maxRunning, perTenant int
	// timeout and stepTimeout are Job.Timeout and Job.StepTimeout.
	timeout, stepTimeout time.Duration
	// signals are Job.Signals by name.
	signals map[string]SignalDecl
}

// TypedJob is a registered job with its types — input I, output O and
// labels L: trigger it, wait for it and read its runs, decoded. It is the
// one typed handle: the engine returns it, generated packages wrap it, and
// its runs (TypedRun) are the ones the client decodes too.
type TypedJob[I, O any, L Labels[L]] struct {
	e   *Engine
	job *Job[I, O]
}

// JobHandle is the handle of a job whose labels are not declared: its runs
// carry their labels as a MapLabels.
type JobHandle[I, O any] = TypedJob[I, O, MapLabels]

// Register adds a job to the engine and returns its typed handle.
// Registering the same *Job again returns the same handle; a different job
// under a registered name is an error. Jobs may be registered while
// the worker runs.
func Register[I, O any](e *Engine, job *Job[I, O]) (*JobHandle[I, O], error) {
	return RegisterTyped[I, O, MapLabels](e, job)
}

// RegisterTyped is Register for a job whose runs carry labels of type L (a
// generated Labels struct): the handle's runs decode their labels into L.
func RegisterTyped[I, O any, L Labels[L]](e *Engine, job *Job[I, O]) (*TypedJob[I, O, L], error) {
	if job == nil || job.Name == "" {
		return nil, errors.New("durably: a job needs a name")
	}
	if err := checkText("job name", job.Name, MaxJobNameBytes); err != nil {
		return nil, fmt.Errorf("durably: job %q: %w", abbrev(job.Name), err)
	}
	if job.Run == nil {
		return nil, fmt.Errorf("durably: job %q has no Run function", job.Name)
	}
	for _, f := range []struct {
		name     string
		negative bool
		value    any
	}{
		{"MaxRunning", job.MaxRunning < 0, job.MaxRunning},
		{"MaxRunningPerTenant", job.MaxRunningPerTenant < 0, job.MaxRunningPerTenant},
		{"Timeout", job.Timeout < 0, job.Timeout},
		{"StepTimeout", job.StepTimeout < 0, job.StepTimeout},
	} {
		if f.negative {
			return nil, fmt.Errorf("durably: job %q: %s must not be negative, got %v", job.Name, f.name, f.value)
		}
	}
	signals, err := signalsOf(job.Name, job.Signals)
	if err != nil {
		return nil, err
	}
	e.jobsMu.Lock()
	defer e.jobsMu.Unlock()
	if existing, ok := e.jobs[job.Name]; ok {
		if existing.def == any(job) {
			if h, ok := existing.handle.(*TypedJob[I, O, L]); ok {
				return h, nil
			}
			// The same job seen through another labels type: a handle is
			// only the job and the engine, so a second one is as good.
			return &TypedJob[I, O, L]{e: e, job: job}, nil
		}
		return nil, fmt.Errorf("Job %q is already registered with a different definition", job.Name)
	}
	var retry *RetryPolicy
	if job.Retry != nil {
		if err := job.Retry.validate(); err != nil {
			return nil, fmt.Errorf("durably: job %q: Retry: %w", job.Name, err)
		}
		p := *job.Retry
		retry = &p
	}
	h := &TypedJob[I, O, L]{e: e, job: job}
	e.jobs[job.Name] = &jobEntry{
		name:        job.Name,
		def:         job,
		parseInput:  job.parseInput,
		execute:     job.execute,
		handle:      h,
		retry:       retry,
		priority:    job.Priority,
		maxRunning:  job.MaxRunning,
		perTenant:   job.MaxRunningPerTenant,
		timeout:     job.Timeout,
		stepTimeout: job.StepTimeout,
		signals:     signals,
	}
	// Copied on write: claims read the maps without the lock's help.
	if job.MaxRunning > 0 {
		e.jobLimits = withLimit(e.jobLimits, job.Name, job.MaxRunning)
	}
	if job.MaxRunningPerTenant > 0 {
		e.tenantLimits = withLimit(e.tenantLimits, job.Name, job.MaxRunningPerTenant)
	}
	return h, nil
}

// MustRegister is Register that panics on error, for package-level setup.
func MustRegister[I, O any](e *Engine, job *Job[I, O]) *JobHandle[I, O] {
	h, err := Register(e, job)
	if err != nil {
		panic(err)
	}
	return h
}

func (e *Engine) job(name string) *jobEntry {
	e.jobsMu.RLock()
	defer e.jobsMu.RUnlock()
	return e.jobs[name]
}

// jobPriority is the default priority of a job's runs (Job.Priority).
func (e *Engine) jobPriority(name string) int {
	if j := e.job(name); j != nil {
		return j.priority
	}
	return 0
}

// jobLimited reports whether the job has a limit of running runs, in all
// or per tenant.
func (e *Engine) jobLimited(name string) bool {
	j := e.job(name)
	return j != nil && (j.maxRunning > 0 || j.perTenant > 0)
}

// claimLimits are the maps of Job.MaxRunning and Job.MaxRunningPerTenant
// for store.ClaimRequest, nil when no job has one. The maps are never
// modified once published.
func (e *Engine) claimLimits() (jobs, perTenant map[string]int) {
	e.jobsMu.RLock()
	defer e.jobsMu.RUnlock()
	return e.jobLimits, e.tenantLimits
}

// withLimit returns a copy of limits with job's limit set to n.
func withLimit(limits map[string]int, job string, n int) map[string]int {
	limits = maps.Clone(limits)
	if limits == nil {
		limits = map[string]int{}
	}
	limits[job] = n
	return limits
}

// JobNames lists the registered jobs.
func (e *Engine) JobNames() []string {
	e.jobsMu.RLock()
	defer e.jobsMu.RUnlock()
	names := make([]string, 0, len(e.jobs))
	for n := range e.jobs {
		names = append(names, n)
	}
	return names
}

// HasJob reports whether a job of that name is registered.
func (e *Engine) HasJob(name string) bool { return e.job(name) != nil }

// JobSettings are what a registered job declares besides its body: how it
// is retried, claimed and limited.
type JobSettings struct {
	// Retry is a copy of Job.Retry with its defaults filled in (Backoff,
	// Initial); nil when the job is not retried.
	Retry               *RetryPolicy
	Priority            int
	MaxRunning          int
	MaxRunningPerTenant int
	Timeout             time.Duration
	StepTimeout         time.Duration
}

// JobSettings returns the settings of a registered job; ok is false when
// no job has that name.
func (e *Engine) JobSettings(name string) (settings JobSettings, ok bool) {
	j := e.job(name)
	if j == nil {
		return JobSettings{}, false
	}
	settings = JobSettings{Priority: j.priority, MaxRunning: j.maxRunning, MaxRunningPerTenant: j.perTenant,
		Timeout: j.timeout, StepTimeout: j.stepTimeout}
	if j.retry != nil {
		p := *j.retry
		if p.Backoff == "" {
			p.Backoff = BackoffExponential
		}
		p.Initial = p.initial()
		settings.Retry = &p
	}
	return settings, true
}

// encodeInput validates a typed input and returns its JSON.
func (j *Job[I, O]) encodeInput(in I) (json.RawMessage, error) {
	if j.ValidateInput != nil {
		if err := j.ValidateInput(&in); err != nil {
			return nil, validationErrorf("Invalid input: %s", err.Error())
		}
	}
	raw, err := json.Marshal(in)
	if err != nil {
		return nil, validationErrorf("Invalid input: %s", err.Error())
	}
	if err := checkJSON("input", raw); err != nil {
		return nil, err
	}
	if j.InputSchema != nil {
		if err := j.InputSchema.ValidateJSON(raw); err != nil {
			return nil, validationErrorf("Invalid input: %s", err.Error())
		}
	}
	return raw, nil
}

func (j *Job[I, O]) parseInput(raw json.RawMessage) (json.RawMessage, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		raw = json.RawMessage("null")
	}
	if j.InputSchema != nil {
		if err := j.InputSchema.ValidateJSON(raw); err != nil {
			return nil, validationErrorf("Invalid input: %s", err.Error())
		}
	}
	var in I
	if err := decodeStrict(raw, &in); err != nil {
		return nil, validationErrorf("Invalid input: %s", err.Error())
	}
	// The stored input is the re-encoded one, and encodeInput checks it
	// against the schema again: decoding fills in members the raw form
	// left out (zero values), which the schema may refuse.
	return j.encodeInput(in)
}

func (j *Job[I, O]) execute(ctx context.Context, s *StepContext, raw json.RawMessage) (json.RawMessage, error) {
	var in I
	if err := json.Unmarshal(raw, &in); err != nil {
		return nil, fmt.Errorf("decode stored input: %w", err)
	}
	out, err := j.Run(ctx, s, in)
	if err != nil {
		return nil, err
	}
	if j.ValidateOutput != nil {
		if err := j.ValidateOutput(&out); err != nil {
			return nil, &outputError{msg: err.Error()}
		}
	}
	enc, err := json.Marshal(out)
	if err != nil {
		return nil, &outputError{msg: err.Error()}
	}
	if err := checkJSON("output", enc); err != nil {
		return nil, &outputError{msg: errorMessage(err)}
	}
	if j.OutputSchema != nil {
		if err := j.OutputSchema.ValidateJSON(enc); err != nil {
			return nil, &outputError{msg: err.Error()}
		}
	}
	if string(enc) == "null" {
		return nil, nil // a job returning nothing leaves output null
	}
	return enc, nil
}

// outputError marks a result that failed output validation.
type outputError struct{ msg string }

func (e *outputError) Error() string { return "Invalid output: " + e.msg }

// decodeStrict decodes one JSON value into v, refusing unknown object
// members and trailing data, with errors that name the field.
func decodeStrict(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return describeJSONError(raw, err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

// jsonPathAt is the path (rows[2].quantity) of the value of doc that ends
// at or after offset, as encoding/json reports where a type error is: the
// end of the offending literal, or just past the [ or { of an array or
// object. "" when doc cannot be walked so far.
func jsonPathAt(doc []byte, offset int64) string {
	type frame struct {
		array bool
		index int
		key   string
	}
	var stack []frame
	dec := json.NewDecoder(bytes.NewReader(doc))
	dec.UseNumber()
	path := func() string {
		var b strings.Builder
		for _, f := range stack {
			if f.array {
				fmt.Fprintf(&b, "[%d]", f.index)
			} else if f.key != "" {
				if b.Len() > 0 {
					b.WriteByte('.')
				}
				b.WriteString(f.key)
			}
		}
		return b.String()
	}
	expectKey := false
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		top := len(stack) - 1
		if d, ok := tok.(json.Delim); ok && (d == '}' || d == ']') {
			stack = stack[:top]
			expectKey = len(stack) > 0 && !stack[len(stack)-1].array
			continue
		}
		if expectKey { // an object's key
			stack[top].key = tok.(string)
			expectKey = false
			continue
		}
		// A value: of the enclosing array's next item, or of the key read.
		if top >= 0 && stack[top].array {
			stack[top].index++
		}
		if dec.InputOffset() >= offset {
			return path()
		}
		if d, ok := tok.(json.Delim); ok {
			stack = append(stack, frame{array: d == '[', index: -1})
			expectKey = d == '{'
			continue
		}
		expectKey = top >= 0 && !stack[top].array
	}
}

// describeJSONError rewrites encoding/json's errors into messages that name
// the field, array indexes included, and the expected type.
func describeJSONError(raw json.RawMessage, err error) error {
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		field := jsonPathAt(raw, typeErr.Offset)
		if field == "" {
			field = typeErr.Field // encoding/json's, without indexes
		}
		if field == "" {
			field = "(root)"
		}
		return fmt.Errorf("%s: expected %s, got %s", field, jsonTypeName(typeErr.Type.Kind().String()), typeErr.Value)
	}
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return fmt.Errorf("malformed JSON at offset %d: %s", syntaxErr.Offset, strings.TrimPrefix(syntaxErr.Error(), "json: "))
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	return errors.New(msg)
}

func jsonTypeName(kind string) string {
	switch kind {
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "integer"
	case "float32", "float64":
		return "number"
	case "bool":
		return "boolean"
	case "slice", "array":
		return "array"
	case "struct", "map":
		return "object"
	}
	return kind
}

// Name is the job's name.
func (h *TypedJob[I, O, L]) Name() string { return h.job.Name }

// Engine is the engine the job is registered with.
func (h *TypedJob[I, O, L]) Engine() *Engine { return h.e }

// Trigger creates a run of the job (R-030 … R-041), or returns the existing
// run for an idempotent or coalesced trigger.
func (h *TypedJob[I, O, L]) Trigger(ctx context.Context, input I, opts ...Option) (*TriggerResult, error) {
	o := collectOptions(opts)
	raw, err := h.job.encodeInput(input)
	if err != nil {
		return nil, err
	}
	return h.e.triggerOne(ctx, parsedTrigger{job: h.job.Name, input: raw, opts: o.trigger})
}

// BatchItem is one item of a batch trigger.
type BatchItem[I any] struct {
	Input   I
	Options []Option
}

// BatchTrigger creates many runs in one transaction, all or nothing (R-045 …
// Results are in item order.
func (h *TypedJob[I, O, L]) BatchTrigger(ctx context.Context, items []BatchItem[I]) ([]TriggerResult, error) {
	parsed, err := h.parseBatch(items)
	if err != nil {
		return nil, err
	}
	return h.e.triggerBatch(ctx, parsed)
}

// parseBatch encodes a batch's inputs, naming the index of a bad one
//
func (h *TypedJob[I, O, L]) parseBatch(items []BatchItem[I]) ([]parsedTrigger, error) {
	parsed := make([]parsedTrigger, len(items))
	for i, it := range items {
		raw, err := h.job.encodeInput(it.Input)
		if err != nil {
			return nil, indexError(err, i)
		}
		parsed[i] = parsedTrigger{job: h.job.Name, input: raw, opts: collectOptions(it.Options).trigger}
	}
	return parsed, nil
}

// Outcome is the result of a completed run.
type Outcome[O any] struct {
	RunID       string
	Output      O
	Disposition Disposition
}

// TriggerAndWait triggers the job and waits for the run to finish.
// A failed run returns an error with the run's message; a cancelled one
// ErrCancelled; WithTimeout bounds the wait with ErrTimeout.
func (h *TypedJob[I, O, L]) TriggerAndWait(ctx context.Context, input I, opts ...Option) (Outcome[O], error) {
	var out Outcome[O]
	o := collectOptions(opts)
	o.wait.timeoutName = "triggerAndWait"
	w, err := h.e.newWaiter(o.wait)
	if err != nil {
		return out, err
	}
	defer w.close()
	res, err := h.Trigger(ctx, input, opts...)
	if err != nil {
		return out, err
	}
	out.RunID, out.Disposition = res.Run.ID, res.Disposition
	w.bind(res.Run.ID)
	output, err := w.waitOutput(ctx, res.Disposition == Created)
	if err != nil {
		return out, err
	}
	if len(output) > 0 {
		if err := json.Unmarshal(output, &out.Output); err != nil {
			return out, fmt.Errorf("durably: decode output of run %s: %w", res.Run.ID, err)
		}
	}
	return out, nil
}

// Labels is what a labels type offers: conversion from and to the stored
// string map. Generated label structs implement it; MapLabels is the
// untyped form. ToMap leaves out unset fields, so that a labels value also
// serves as a filter (only the set fields must match). The engine, the HTTP
// handler and the client all take it from here.
type Labels[L any] interface {
	ToMap() map[string]string
	// FromMap makes an L from a map. It fails only for keys L cannot
	// hold; the values are validated by the engine's label schema
	// (Config.Labels).
	FromMap(m map[string]string) (L, error)
}

// MapLabels is the labels type of applications that declare none: any keys,
// string values.
type MapLabels map[string]string

// ToMap returns a copy of the labels.
func (m MapLabels) ToMap() map[string]string { return maps.Clone(m) }

// FromMap returns a copy of m.
func (MapLabels) FromMap(m map[string]string) (MapLabels, error) { return maps.Clone(m), nil }

// TypedRun is a run of a known job with its input, output and labels
// decoded. Run.Input, Run.Output and Run.Labels keep the stored form. The
// engine's handles, generated packages and the client (which reads runs
// from the wire into a Run) all return it, decoded by DecodeRun.
type TypedRun[I, O any, L Labels[L]] struct {
	*Run
	Input  I
	Output O // zero unless the run completed with a value
	Labels L
}

// DecodeRun decodes a run's input, output and labels; a nil run is nil.
// JSON null (a run without input, or the wire's null output) is the zero
// value, whatever the type's own decoding would make of it.
func DecodeRun[I, O any, L Labels[L]](run *Run) (*TypedRun[I, O, L], error) {
	if run == nil {
		return nil, nil
	}
	t := &TypedRun[I, O, L]{Run: run}
	if len(run.Input) > 0 && string(run.Input) != "null" {
		if err := json.Unmarshal(run.Input, &t.Input); err != nil {
			return nil, fmt.Errorf("durably: decode input of run %s: %w", run.ID, err)
		}
	}
	if len(run.Output) > 0 && string(run.Output) != "null" {
		if err := json.Unmarshal(run.Output, &t.Output); err != nil {
			return nil, fmt.Errorf("durably: decode output of run %s: %w", run.ID, err)
		}
	}
	var zero L
	labels, err := zero.FromMap(run.Labels)
	if err != nil {
		return nil, fmt.Errorf("durably: labels of run %s: %w", run.ID, err)
	}
	t.Labels = labels
	return t, nil
}

// JobSchema describes a job for GET /jobs: what generated packages declare
// and clients read.
type JobSchema struct {
	Name        string          `json:"name"`
	Description string          `json:"description,omitempty"`
	Input       json.RawMessage `json:"input"`
	Output      json.RawMessage `json:"output"`
	// Schedules are the job's periodic triggers registered with the
	// engine (AddSchedule), filled in at each request; an addition to the
	// original protocol, absent when there are none.
	Schedules []ScheduleInfo `json:"schedules,omitempty"`
}

// GetRun returns the run if it exists and belongs to this job, else nil.
func (h *TypedJob[I, O, L]) GetRun(ctx context.Context, id string) (*TypedRun[I, O, L], error) {
	run, err := h.e.GetRun(ctx, id)
	if err != nil || run == nil || run.JobName != h.job.Name {
		return nil, err
	}
	return DecodeRun[I, O, L](run)
}

// ListRuns lists this job's runs; the filter's JobNames is replaced by the
// job's name.
func (h *TypedJob[I, O, L]) ListRuns(ctx context.Context, filter RunFilter) ([]*TypedRun[I, O, L], error) {
	filter.JobNames = []string{h.job.Name}
	runs, err := h.e.ListRuns(ctx, filter)
	if err != nil {
		return nil, err
	}
	out := make([]*TypedRun[I, O, L], 0, len(runs))
	for _, r := range runs {
		t, err := DecodeRun[I, O, L](r)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// WaitForRun waits for a run of this job and returns it typed; a run of
// another job is not found, as for GetRun.
func (h *TypedJob[I, O, L]) WaitForRun(ctx context.Context, id string, opts ...Option) (*TypedRun[I, O, L], error) {
	run, err := h.e.WaitForRun(ctx, id, opts...)
	if err != nil {
		return nil, err
	}
	if run.JobName != h.job.Name {
		return nil, notFoundf("Run not found: %s", id)
	}
	return DecodeRun[I, O, L](run)
}
