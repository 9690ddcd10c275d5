package store

// The longest strings the engine hands a store, in bytes of UTF-8 (none of
// them holds a NUL character or bytes that are not UTF-8 either). A store
// may rely on them; docs/limits.md explains each and how the engine refuses
// or shortens what is longer.
//
// The names and keys are indexed, and PostgreSQL refuses an index entry
// over 2704 bytes (a third of a page, less a heap pointer): the widest
// entry, job name + key scope + key in idx_durably_runs_job_scope_idempotency
// and idx_durably_runs_pending_scope_concurrency, is at most
// 256 + 1024 + 1024 bytes of text and at most 40 bytes of headers and
// alignment: 2344, with room to spare.
const (
	// MaxJobNameBytes bounds Job.Name, refused at registration.
	MaxJobNameBytes = 256
	// MaxKeyBytes bounds idempotency and concurrency keys, refused at
	// trigger.
	MaxKeyBytes = 1024
	// MaxLabelKeyBytes and MaxLabelValueBytes bound each label, refused at
	// trigger.
	MaxLabelKeyBytes   = 128
	MaxLabelValueBytes = 256
	// MaxKeyScopeBytes bounds Run.KeyScope, the JSON of the tenant labels'
	// keys and values (D11): a trigger whose tenant labels make a longer
	// one is refused.
	MaxKeyScopeBytes = 1024
	// MaxStepNameBytes bounds a step's name; a step with a longer one fails
	// without running.
	MaxStepNameBytes = 1024
	// MaxSignalNameBytes bounds a signal's name, refused where a job
	// declares it (Job.Signals).
	MaxSignalNameBytes = 256
	// MaxScheduleNameBytes bounds Schedule.Name, part of its ticks'
	// idempotency keys ("schedule:<name>:<tick>", at most 30 bytes more).
	MaxScheduleNameBytes = 256
	// MaxWorkerIDBytes bounds the worker id written as a lease's owner.
	MaxWorkerIDBytes = 256
	// MaxMessageBytes bounds error, log and progress messages: the job does
	// not choose their length, so a longer one is cut, not refused.
	MaxMessageBytes = 64 << 10
	// MaxTraceContextBytes bounds a run's trace context (W3C traceparent
	// and tracestate: 55 and at most 512 characters, as JSON).
	MaxTraceContextBytes = 4096
	// MaxJSONBytes bounds each JSON document: a run's input and output, a
	// step's output, a log record's data.
	MaxJSONBytes = 16 << 20
	// MaxBatchBytes bounds what one batch trigger writes, its inputs, keys,
	// labels and job names together: PostgreSQL inserts a batch in one
	// statement, and a statement's parameters must stay under 1 GiB.
	MaxBatchBytes = 64 << 20
)
