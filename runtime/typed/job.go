package typed

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyhttp"
)

// Labels is the constraint on generated label types.
type Labels[L any] = durablyhttp.Labels[L]

// Job is a job handle typed by its input I, output O and labels L.
type Job[I, O any, L Labels[L]] struct {
	h *durably.JobHandle[I, O]
}

// Register registers def on e and returns its typed handle.
func Register[I, O any, L Labels[L]](e *durably.Engine, def *durably.Job[I, O]) (*Job[I, O, L], error) {
	h, err := durably.Register(e, def)
	if err != nil {
		return nil, err
	}
	return &Job[I, O, L]{h: h}, nil
}

// Name is the job's name.
func (j *Job[I, O, L]) Name() string { return j.h.Name() }

// Handle is the untyped-labels handle underneath.
func (j *Job[I, O, L]) Handle() *durably.JobHandle[I, O] { return j.h }

// TriggerOptions are the options of a trigger with typed labels.
type TriggerOptions[L any] struct {
	Labels         L
	IdempotencyKey string
	ConcurrencyKey string
	// CoalesceSkip returns the pending run of the concurrency key instead
	// of failing with a conflict.
	CoalesceSkip bool
	// GlobalKeys puts the keys in the scope shared by all tenants, even
	// when the engine scopes keys by tenant (durably.WithGlobalKeys, D11).
	GlobalKeys bool
	// RunAt, Delay and Priority are durably.WithRunAt, WithDelay and
	// WithPriority; zero values and nil leave them out.
	RunAt    time.Time
	Delay    time.Duration
	Priority *int
}

// schedule is the options for RunAt, Delay and Priority.
func schedule(runAt time.Time, delay time.Duration, priority *int) []durably.Option {
	var opts []durably.Option
	if !runAt.IsZero() {
		opts = append(opts, durably.WithRunAt(runAt))
	}
	if delay != 0 {
		opts = append(opts, durably.WithDelay(delay))
	}
	if priority != nil {
		opts = append(opts, durably.WithPriority(*priority))
	}
	return opts
}

func (o TriggerOptions[L]) options(labels map[string]string) []durably.Option {
	opts := []durably.Option{durably.WithLabels(labels)}
	if o.IdempotencyKey != "" {
		opts = append(opts, durably.WithIdempotencyKey(o.IdempotencyKey))
	}
	if o.ConcurrencyKey != "" {
		opts = append(opts, durably.WithConcurrencyKey(o.ConcurrencyKey))
	}
	if o.CoalesceSkip {
		opts = append(opts, durably.WithCoalesceSkip())
	}
	if o.GlobalKeys {
		opts = append(opts, durably.WithGlobalKeys())
	}
	return append(opts, schedule(o.RunAt, o.Delay, o.Priority)...)
}

// Run is a run of a typed job.
type Run[I, O any, L Labels[L]] struct {
	*durably.Run
	Input  I
	Output O // zero unless the run completed with a value
	Labels L
}

func decodeRun[I, O any, L Labels[L]](r *durably.Run) (*Run[I, O, L], error) {
	out := &Run[I, O, L]{Run: r}
	if len(r.Input) > 0 {
		if err := json.Unmarshal(r.Input, &out.Input); err != nil {
			return nil, fmt.Errorf("decode input of run %s: %w", r.ID, err)
		}
	}
	if len(r.Output) > 0 {
		if err := json.Unmarshal(r.Output, &out.Output); err != nil {
			return nil, fmt.Errorf("decode output of run %s: %w", r.ID, err)
		}
	}
	var zero L
	labels, err := zero.FromMap(r.Labels)
	if err != nil {
		return nil, fmt.Errorf("labels of run %s: %w", r.ID, err)
	}
	out.Labels = labels
	return out, nil
}

// Trigger creates a run (or finds the idempotent or coalesced one).
func (j *Job[I, O, L]) Trigger(ctx context.Context, in I, opts TriggerOptions[L]) (*Run[I, O, L], durably.Disposition, error) {
	res, err := j.h.Trigger(ctx, in, opts.options(opts.Labels.ToMap())...)
	if err != nil {
		return nil, "", err
	}
	r, err := decodeRun[I, O, L](res.Run)
	return r, res.Disposition, err
}

// TriggerAndWait triggers and waits for the run's output. wait takes
// durably.WithTimeout and the other wait options.
func (j *Job[I, O, L]) TriggerAndWait(ctx context.Context, in I, opts TriggerOptions[L], wait ...durably.Option) (durably.Outcome[O], error) {
	return j.h.TriggerAndWait(ctx, in, append(opts.options(opts.Labels.ToMap()), wait...)...)
}

// BatchItem is one item of a batch trigger.
type BatchItem[I any, L any] struct {
	Input   I
	Options TriggerOptions[L]
}

// BatchTrigger creates many runs in one transaction, all or nothing.
func (j *Job[I, O, L]) BatchTrigger(ctx context.Context, items []BatchItem[I, L]) ([]*Run[I, O, L], []durably.Disposition, error) {
	batch := make([]durably.BatchItem[I], len(items))
	for i, it := range items {
		batch[i] = durably.BatchItem[I]{Input: it.Input, Options: it.Options.options(it.Options.Labels.ToMap())}
	}
	res, err := j.h.BatchTrigger(ctx, batch)
	if err != nil {
		return nil, nil, err
	}
	runs := make([]*Run[I, O, L], len(res))
	disp := make([]durably.Disposition, len(res))
	for i, r := range res {
		if runs[i], err = decodeRun[I, O, L](r.Run); err != nil {
			return nil, nil, err
		}
		disp[i] = r.Disposition
	}
	return runs, disp, nil
}

// GetRun returns the run if it exists and belongs to the job, else nil.
func (j *Job[I, O, L]) GetRun(ctx context.Context, id string) (*Run[I, O, L], error) {
	r, err := j.h.Engine().GetRun(ctx, id)
	if err != nil || r == nil || r.JobName != j.h.Name() {
		return nil, err
	}
	return decodeRun[I, O, L](r)
}

// RunFilter selects runs of a job: statuses, labels (the set fields must
// match), newest first, Limit (0: none) and Offset.
type RunFilter[L any] struct {
	Statuses []durably.Status
	Labels   L
	Limit    int
	Offset   int
}

// ListRuns lists the job's runs newest first.
func (j *Job[I, O, L]) ListRuns(ctx context.Context, f RunFilter[L]) ([]*Run[I, O, L], error) {
	runs, err := j.h.Engine().ListRuns(ctx, durably.RunFilter{
		Statuses: f.Statuses, JobNames: []string{j.h.Name()}, Labels: f.Labels.ToMap(), Limit: f.Limit, Offset: f.Offset,
	})
	if err != nil {
		return nil, err
	}
	out := make([]*Run[I, O, L], 0, len(runs))
	for _, r := range runs {
		t, err := decodeRun[I, O, L](r)
		if err != nil {
			return nil, err
		}
		out = append(out, t)
	}
	return out, nil
}

// LabelSchema validates label maps against a labels type's schema, for
// durably.Config.Labels: declared labels are checked on every trigger (D1).
func LabelSchema(s *Schema) durably.LabelSchema {
	return durably.LabelSchemaFunc(func(m map[string]string) (map[string]string, error) {
		doc := make(map[string]any, len(m))
		for k, v := range m {
			doc[k] = v
		}
		if err := s.ValidateValue(doc); err != nil {
			return nil, fmt.Errorf("Invalid input: %w", err)
		}
		return m, nil
	})
}

// NoOutput is the output type of a job declared without one: it encodes as
// null, so the run's output stays null.
type NoOutput struct{}

// MarshalJSON encodes null.
func (NoOutput) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

// NoInput is the input type of a job declared without one: it encodes as
// null, and its generated schema is null, so an HTTP trigger may leave
// input out or send null.
type NoInput struct{}

// MarshalJSON encodes null.
func (NoInput) MarshalJSON() ([]byte, error) { return []byte("null"), nil }

// Options are a trigger's options besides its labels. Generated packages
// pass their labels apart from them, as a value only their constructor
// makes, so that a trigger that forgets a required label does not compile.
type Options struct {
	IdempotencyKey string
	ConcurrencyKey string
	// CoalesceSkip returns the pending run of the concurrency key instead
	// of failing with a conflict.
	CoalesceSkip bool
	// RunAt, Delay and Priority delay the run and set its priority (R-200,
	// R-203), as in TriggerOptions.
	RunAt    time.Time
	Delay    time.Duration
	Priority *int
}

// WithLabels combines labels and options into the TriggerOptions the
// generic handle takes.
func WithLabels[L any](labels L, o Options) TriggerOptions[L] {
	return TriggerOptions[L]{Labels: labels, IdempotencyKey: o.IdempotencyKey, ConcurrencyKey: o.ConcurrencyKey, CoalesceSkip: o.CoalesceSkip,
		RunAt: o.RunAt, Delay: o.Delay, Priority: o.Priority}
}
