package storekit

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/durably-go/durably/runtime/store"
)

// EncodeLabels renders labels as the JSON object stored in durably_runs.labels.
// Keys come out sorted, so equal maps give equal text.
func EncodeLabels(labels map[string]string) string {
	if len(labels) == 0 {
		return "{}"
	}
	b, err := json.Marshal(labels)
	if err != nil { // a map[string]string always marshals
		panic(err)
	}
	return string(b)
}

// DecodeLabels parses the stored labels object; it never returns nil.
func DecodeLabels(s string) (map[string]string, error) {
	labels := map[string]string{}
	if s == "" || s == "{}" {
		return labels, nil
	}
	if err := json.Unmarshal([]byte(s), &labels); err != nil {
		return nil, fmt.Errorf("durably store: bad labels %q: %w", s, err)
	}
	return labels, nil
}

// EncodeProgress renders progress as stored JSON; nil stays empty (NULL).
func EncodeProgress(p *store.Progress) string {
	if p == nil {
		return ""
	}
	b, err := json.Marshal(p)
	if err != nil {
		panic(err)
	}
	return string(b)
}

// DecodeProgress parses stored progress; empty text is nil.
func DecodeProgress(s string) (*store.Progress, error) {
	if s == "" {
		return nil, nil
	}
	var p store.Progress
	if err := json.Unmarshal([]byte(s), &p); err != nil {
		return nil, fmt.Errorf("durably store: bad progress %q: %w", s, err)
	}
	return &p, nil
}

// RawRun is a run row as both drivers read it, with NULL as the empty
// string; Decode turns it into a Run.
type RawRun struct {
	ID, JobName, Input, Status, IdempotencyKey, ConcurrencyKey, Labels string
	KeyScope                                                           string
	CurrentStepIndex, CompletedStepCount                               int64
	Progress, Output, Error, LeaseOwner, LeaseExpiresAt                string
	LeaseGeneration                                                    int64
	StartedAt, CompletedAt, CreatedAt, UpdatedAt                       string
}

// Decode converts the row.
func (r *RawRun) Decode() (*store.Run, error) {
	run := &store.Run{
		ID:                 r.ID,
		JobName:            r.JobName,
		Input:              json.RawMessage(r.Input),
		Status:             store.Status(r.Status),
		IdempotencyKey:     r.IdempotencyKey,
		ConcurrencyKey:     r.ConcurrencyKey,
		KeyScope:           r.KeyScope,
		CurrentStepIndex:   int(r.CurrentStepIndex),
		CompletedStepCount: int(r.CompletedStepCount),
		Error:              r.Error,
		LeaseOwner:         r.LeaseOwner,
		LeaseGeneration:    r.LeaseGeneration,
	}
	if r.Output != "" {
		run.Output = json.RawMessage(r.Output)
	}
	var err error
	if run.Labels, err = DecodeLabels(r.Labels); err != nil {
		return nil, err
	}
	if run.Progress, err = DecodeProgress(r.Progress); err != nil {
		return nil, err
	}
	for _, f := range []struct {
		dst *time.Time
		src string
	}{
		{&run.LeaseExpiresAt, r.LeaseExpiresAt},
		{&run.StartedAt, r.StartedAt},
		{&run.CompletedAt, r.CompletedAt},
		{&run.CreatedAt, r.CreatedAt},
		{&run.UpdatedAt, r.UpdatedAt},
	} {
		if f.src == "" {
			continue
		}
		if *f.dst, err = store.ParseTime(f.src); err != nil {
			return nil, err
		}
	}
	return run, nil
}

// RawStep is a step row with NULL as the empty string.
type RawStep struct {
	ID, RunID, Name                               string
	Index                                         int64
	Status, Output, Error, StartedAt, CompletedAt string
}

// Decode converts the row.
func (r *RawStep) Decode() (*store.Step, error) {
	s := &store.Step{ID: r.ID, RunID: r.RunID, Name: r.Name, Index: int(r.Index), Status: store.StepStatus(r.Status), Error: r.Error}
	if r.Output != "" {
		s.Output = json.RawMessage(r.Output)
	}
	var err error
	if s.StartedAt, err = store.ParseTime(r.StartedAt); err != nil {
		return nil, err
	}
	if r.CompletedAt != "" {
		if s.CompletedAt, err = store.ParseTime(r.CompletedAt); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// RawLog is a log row with NULL as the empty string.
type RawLog struct {
	ID, RunID, StepName, Level, Message, Data, CreatedAt string
}

// Decode converts the row.
func (r *RawLog) Decode() (*store.Log, error) {
	l := &store.Log{ID: r.ID, RunID: r.RunID, StepName: r.StepName, Level: r.Level, Message: r.Message}
	if r.Data != "" {
		l.Data = json.RawMessage(r.Data)
	}
	var err error
	if l.CreatedAt, err = store.ParseTime(r.CreatedAt); err != nil {
		return nil, err
	}
	return l, nil
}

// OptionalTime formats t, or returns "" (NULL) for the zero time.
func OptionalTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return store.FormatTime(t)
}
