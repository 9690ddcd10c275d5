package typed

import (
	"fmt"
	"time"

	"github.com/durably-go/durably"
)

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

// Apply turns o into the engine's trigger options, its labels included:
// what a generated handle passes to durably.TypedJob.Trigger.
func Apply[L durably.Labels[L]](o TriggerOptions[L]) []durably.Option {
	return o.options(o.Labels.ToMap())
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

// RunFilter selects runs of a job: statuses, labels (the set fields must
// match), newest first, Limit (0: none) and Offset.
type RunFilter[L durably.Labels[L]] struct {
	Statuses []durably.Status
	Labels   L
	Limit    int
	Offset   int
}

// Filter is f as the engine's filter, labels as the stored map; the typed
// handle's ListRuns sets its job.
func (f RunFilter[L]) Filter() durably.RunFilter {
	return durably.RunFilter{Statuses: f.Statuses, Labels: f.Labels.ToMap(), Limit: f.Limit, Offset: f.Offset}
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
			//lint:ignore ST1005 the original's 400 message for an input its schema refuses, which clients match
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
