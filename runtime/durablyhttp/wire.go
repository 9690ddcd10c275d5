package durablyhttp

import (
	"github.com/durably-go/durably"
	"github.com/durably-go/durably/internal/jsonappend"
)

func appendString(b []byte, s string) []byte { return jsonappend.String(b, s) }

// appendArray appends items as a JSON array, each by appendOne.
func appendArray[T any](b []byte, items []T, appendOne func([]byte, T) []byte) []byte {
	b = append(b, '[')
	for i, item := range items {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendOne(b, item)
	}
	return append(b, ']')
}

// appendJSONObjectString appends {"k": v}.
func appendJSONObjectString(b []byte, k, v string) []byte {
	w := jsonappend.Writer{B: append(b, '{')}
	w.Str(k, v)
	return append(w.B, '}')
}

// appendClientRun appends the ClientRun projection of a run (H-020): the
// run without its keys, lease fields and updatedAt, plus isTerminal and
// isActive, in exactly this key order; then durably-go's additive members
// runAt, priority and attempt, crashes and attempts, which
// the original's clients ignore.
func appendClientRun(b []byte, r *durably.Run) []byte {
	w := jsonappend.Writer{B: append(b, '{')}
	w.Str("id", r.ID)
	w.Str("jobName", r.JobName)
	w.Raw("input", r.Input)
	w.Str("status", string(r.Status))
	w.Int("currentStepIndex", int64(r.CurrentStepIndex))
	w.Int("completedStepCount", int64(r.CompletedStepCount))
	w.Progress("progress", r.Progress)
	w.Raw("output", r.Output)
	w.NullableStr("error", r.Error)
	w.Labels("labels", r.Labels)
	w.Time("startedAt", r.StartedAt)
	w.Time("completedAt", r.CompletedAt)
	w.Time("createdAt", r.CreatedAt)
	w.Bool("isTerminal", r.Status.Terminal())
	w.Bool("isActive", r.Status.Active())
	w.Time("runAt", r.RunAt)
	w.Int("priority", int64(r.Priority))
	w.Int("attempt", int64(r.Attempt))
	w.Int("crashes", int64(r.Crashes))
	w.Attempts("attempts", r.Attempts)
	// Additive (issue 22): the parent of a child run, and what a
	// pending run waits for besides its runAt.
	w.NullableStr("parentRunId", r.ParentRunID)
	w.NullableStr("waitingFor", waitingFor(r))
	return append(w.B, '}')
}

// waitingFor is what a pending run waits for: Run.WaitingFor while it is
// pending ("" once claimed, when what it waited for is stale).
func waitingFor(r *durably.Run) string {
	if r.Status != durably.StatusPending {
		return ""
	}
	return r.WaitingFor
}

// AppendSignal appends a signal kept for a run as GET /signals shows it
//
func AppendSignal(b []byte, s *durably.SignalRecord) []byte {
	w := jsonappend.Writer{B: append(b, '{')}
	w.Str("id", s.ID)
	w.Str("runId", s.RunID)
	w.Str("name", s.Name)
	w.Raw("payload", s.Payload)
	w.Time("createdAt", s.CreatedAt)
	return append(w.B, '}')
}

// appendStep appends a step as GET /steps shows it (H-021).
func appendStep(b []byte, s *durably.StepRecord) []byte {
	w := jsonappend.Writer{B: append(b, '{')}
	w.Str("id", s.ID)
	w.Str("runId", s.RunID)
	w.Str("name", s.Name)
	w.Int("index", int64(s.Index))
	w.Str("status", string(s.Status))
	w.Raw("output", s.Output)
	w.NullableStr("error", s.Error)
	w.Time("startedAt", s.StartedAt)
	w.Time("completedAt", s.CompletedAt)
	// Additive (issue 14): the step's 1-based attempt; rows from
	// before attempts were recorded count as the first.
	w.Int("attempt", int64(max(s.Attempt, 1)))
	return append(w.B, '}')
}

// appendLog appends a log record as GET /logs shows it (issue 21), in the
// shape of the original's LogEntry: stepName null outside a step, data
// null when none.
func appendLog(b []byte, l *durably.LogRecord) []byte {
	w := jsonappend.Writer{B: append(b, '{')}
	w.Str("id", l.ID)
	w.Str("runId", l.RunID)
	w.NullableStr("stepName", l.StepName)
	w.Str("level", l.Level)
	w.Str("message", l.Message)
	w.Raw("data", l.Data)
	w.Time("createdAt", l.CreatedAt)
	return append(w.B, '}')
}

// appendProjection appends an event as GET /runs/subscribe sends it: a
// projection without timestamp and sequence, keys in the order of H-051.
// It reports false for types the list stream does not forward.
func appendProjection(b []byte, e *durably.Event) ([]byte, bool) {
	w := jsonappend.Writer{B: append(b, '{')}
	w.Str("type", string(e.Type))
	w.Str("runId", e.RunID)
	w.Str("jobName", e.JobName)
	switch e.Type {
	case durably.EventRunTrigger, durably.EventRunLeased, durably.EventRunComplete, durably.EventRunFail,
		durably.EventRunCancel, durably.EventRunDelete, durably.EventRunResume:
		w.Labels("labels", e.Labels)
	case durably.EventRunCoalesced:
		w.Labels("labels", e.Labels)
		w.Raw("skippedInput", e.SkippedInput)
		w.Labels("skippedLabels", e.SkippedLabels)
	case durably.EventRunProgress:
		w.Progress("progress", e.Progress)
		w.Labels("labels", e.Labels)
	case durably.EventStepStart, durably.EventStepComplete, durably.EventStepCancel:
		w.Str("stepName", e.StepName)
		w.Int("stepIndex", int64(e.StepIndex))
		w.Labels("labels", e.Labels)
	case durably.EventStepFail:
		w.Str("stepName", e.StepName)
		w.Int("stepIndex", int64(e.StepIndex))
		w.Str("error", e.Error)
		w.Labels("labels", e.Labels)
	case durably.EventLogWrite:
		w.Labels("labels", e.Labels)
		w.NullableStr("stepName", e.StepName)
		w.Str("level", e.Level)
		w.Str("message", e.Message)
		w.Raw("data", e.Data)
	default:
		return b, false
	}
	return append(w.B, '}'), true
}
