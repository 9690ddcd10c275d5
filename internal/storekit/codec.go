package storekit

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/durably-go/durably/store"
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

// RawRun is a run row as the stores read it, with NULL as the empty string
// or the zero time; Decode turns it into a Run. A store whose engine keeps
// timestamps as text parses them first (ParseTimes).
type RawRun struct {
	ID, JobName, Input, Status, IdempotencyKey, ConcurrencyKey, Labels string
	KeyScope                                                           string
	CurrentStepIndex, CompletedStepCount                               int64
	Progress, Output, Error, LeaseOwner                                string
	LeaseGeneration                                                    int64
	LeaseExpiresAt, StartedAt, CompletedAt, CreatedAt, UpdatedAt       time.Time
	RunAt                                                              time.Time
	Priority, Attempt, Crashes                                         int64
	Attempts, TraceContext                                             string
	ParentRunID, WaitingFor                                            string
	Wakes                                                              int64
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
		LeaseExpiresAt:     storedTime(r.LeaseExpiresAt),
		StartedAt:          storedTime(r.StartedAt),
		CompletedAt:        storedTime(r.CompletedAt),
		CreatedAt:          storedTime(r.CreatedAt),
		UpdatedAt:          storedTime(r.UpdatedAt),
		RunAt:              storedTime(r.RunAt),
		Priority:           int(r.Priority),
		Attempt:            int(r.Attempt),
		Crashes:            int(r.Crashes),
		TraceContext:       r.TraceContext,
		ParentRunID:        r.ParentRunID,
		WaitingFor:         r.WaitingFor,
		Wakes:              r.Wakes,
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
	if run.Attempts, err = DecodeAttempts(r.Attempts); err != nil {
		return nil, err
	}
	return run, nil
}

// EncodeAttempts renders an attempt history as stored JSON; nil stays
// empty (the store then keeps what the run has).
func EncodeAttempts(a []store.Attempt) string {
	if a == nil {
		return ""
	}
	b, err := json.Marshal(a)
	if err != nil { // strings, ints and times always marshal
		panic(err)
	}
	return string(b)
}

// DecodeAttempts parses a stored attempt history; empty text is none.
func DecodeAttempts(s string) ([]store.Attempt, error) {
	if s == "" {
		return nil, nil
	}
	var a []store.Attempt
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		return nil, fmt.Errorf("durably store: bad attempts %q: %w", s, err)
	}
	return a, nil
}

// RawStep is a step row with NULL as the empty string or the zero time.
type RawStep struct {
	ID, RunID, Name        string
	Index                  int64
	Status, Output, Error  string
	StartedAt, CompletedAt time.Time
	Attempt                int64
}

// Decode converts the row.
func (r *RawStep) Decode() *store.Step {
	s := &store.Step{ID: r.ID, RunID: r.RunID, Name: r.Name, Index: int(r.Index), Status: store.StepStatus(r.Status), Error: r.Error,
		StartedAt: storedTime(r.StartedAt), CompletedAt: storedTime(r.CompletedAt),
		Attempt: int(r.Attempt)}
	if r.Output != "" {
		s.Output = json.RawMessage(r.Output)
	}
	return s
}

// RawLog is a log row with NULL as the empty string.
type RawLog struct {
	ID, RunID, StepName, Level, Message, Data string
	CreatedAt                                 time.Time
}

// Decode converts the row.
func (r *RawLog) Decode() *store.Log {
	l := &store.Log{ID: r.ID, RunID: r.RunID, StepName: r.StepName, Level: r.Level, Message: r.Message, CreatedAt: storedTime(r.CreatedAt)}
	if r.Data != "" {
		l.Data = json.RawMessage(r.Data)
	}
	return l
}

// storedTime is a time as the contract returns it: UTC, milliseconds
// (store.Truncate), the zero time for NULL.
func storedTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return store.Truncate(t)
}

// TimeText is a timestamp stored as text (store.TimeLayout), "" for NULL,
// and where its parsed value goes.
type TimeText struct {
	Dst *time.Time
	Src string
}

// ParseTimes parses timestamps stored as text.
func ParseTimes(fields ...TimeText) error {
	for _, f := range fields {
		if f.Src == "" {
			*f.Dst = time.Time{}
			continue
		}
		t, err := store.ParseTime(f.Src)
		if err != nil {
			return err
		}
		*f.Dst = t
	}
	return nil
}

// OptionalTime formats t, or returns "" (NULL) for the zero time.
func OptionalTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return store.FormatTime(t)
}

// StepAttempt is the attempt stored for a step: 1-based, 0 (unset) as 1.
func StepAttempt(s *store.Step) int64 {
	return int64(max(s.Attempt, 1))
}

// DeferUntil is the run_at a deferral writes: d.Until, or d.Now for the
// zero time, which would otherwise be NULL (or year 1) and leave the run
// waiting for a time that never comes (PostgreSQL) or sort it oddly.
func DeferUntil(d store.Deferral) time.Time {
	if d.Until.IsZero() {
		return d.Now
	}
	return d.Until
}

// Ready is the ready flag a new run is inserted with: 1 when it is
// claimable at once, 0 when its RunAt is after its creation and it waits
// (out of the claim's index) until a claim promotes it.
func Ready(r *store.Run) int64 {
	if r.RunAt.After(r.CreatedAt) {
		return 0
	}
	return 1
}

// StatusCounts is the row of a count per status, in the order of
// store.Statuses, as CountRuns returns it: statuses without runs absent.
func StatusCounts(perStatus ...int64) map[store.Status]int {
	counts := map[store.Status]int{}
	for i, n := range perStatus {
		if n > 0 {
			counts[store.Statuses[i]] = int(n)
		}
	}
	return counts
}

// WaitColumns are the columns a deferral writes for its Wait (S-060):
// waiting_for ("" for NULL: a deferral without one), the awaited children
// and the run's wakes as the engine saw them.
func WaitColumns(w *store.Wait) (waitingFor string, awaiting, seenWakes int64) {
	switch {
	case w == nil:
		return "", 0, 0
	case w.Signal != "":
		return store.WaitingSignalPrefix + w.Signal, 0, w.SeenWakes
	default:
		return store.WaitingChildren, int64(w.Children), w.SeenWakes
	}
}

// RawSignal is a signal row.
type RawSignal struct {
	ID, RunID, Name, Payload string
	CreatedAt                time.Time
}

// Decode converts the row.
func (r *RawSignal) Decode() *store.Signal {
	return &store.Signal{ID: r.ID, RunID: r.RunID, Name: r.Name, Payload: json.RawMessage(r.Payload), CreatedAt: storedTime(r.CreatedAt)}
}
