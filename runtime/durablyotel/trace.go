package durablyotel

import (
	"context"
	"encoding/json"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.43.0"
	"go.opentelemetry.io/otel/trace"

	"github.com/durably-go/durably"
)

// system is messaging.system: durably, as the messaging system, is not one
// the conventions list.
const system = "durably"

// The operations, as messaging.operation.name.
const (
	opTrigger = "trigger"
	opExecute = "execute"
)

// The attributes of durably's own, beside the messaging conventions'.
const (
	attrJob          = attribute.Key("durably.job.name")
	attrRun          = attribute.Key("durably.run.id")
	attrRunAttempt   = attribute.Key("durably.run.attempt")
	attrRunOutcome   = attribute.Key("durably.run.outcome")
	attrRunStatus    = attribute.Key("durably.run.status")
	attrDisposition  = attribute.Key("durably.trigger.disposition")
	attrStep         = attribute.Key("durably.step.name")
	attrStepIndex    = attribute.Key("durably.step.index")
	attrStepAttempt  = attribute.Key("durably.step.attempt")
	attrStepOutcome  = attribute.Key("durably.step.outcome")
	attrRunDue       = attribute.Key("durably.run.due")
	attrStoreOp      = attribute.Key("durably.store.operation")
	attrErrorType    = semconv.ErrorTypeKey
	attrDestination  = semconv.MessagingDestinationNameKey
	attrMessageID    = semconv.MessagingMessageIDKey
	attrClientID     = semconv.MessagingClientIDKey
	attrSystem       = semconv.MessagingSystemKey
	attrOperation    = semconv.MessagingOperationNameKey
	attrOperationTyp = semconv.MessagingOperationTypeKey
)

// started is what an observed operation keeps in its context for its end:
// when it started (spans may be no-ops, metrics are not).
type started struct{ at time.Time }

type startedKey struct{}

func withStart(ctx context.Context) context.Context {
	return context.WithValue(ctx, startedKey{}, started{at: time.Now()})
}

func since(ctx context.Context) float64 {
	s, ok := ctx.Value(startedKey{}).(started)
	if !ok {
		return 0
	}
	return time.Since(s.at).Seconds()
}

// StartTrigger starts the trigger's span (kind producer, a child of the
// span in ctx) and returns its trace context, encoded for the runs.
func (o *Observer) StartTrigger(ctx context.Context, t durably.TriggerInfo) (context.Context, string) {
	job := sameJob(t.Runs)
	name := opTrigger
	attrs := []attribute.KeyValue{attrSystem.String(system), attrOperation.String(opTrigger), semconv.MessagingOperationTypeSend}
	if job != "" {
		name += " " + job
		attrs = append(attrs, attrDestination.String(job), attrJob.String(job))
	}
	if len(t.Runs) > 1 || t.Batch {
		attrs = append(attrs, semconv.MessagingBatchMessageCount(len(t.Runs)))
	}
	ctx, _ = o.tracer.Start(ctx, name, trace.WithSpanKind(trace.SpanKindProducer), trace.WithAttributes(attrs...))
	return withStart(ctx), o.encode(ctx)
}

// EndTrigger ends the trigger's span with the runs it stands for (the run
// an idempotent or coalesced trigger returned) and counts them.
func (o *Observer) EndTrigger(ctx context.Context, t durably.TriggerInfo, results []durably.TriggerResult, err error) {
	span := trace.SpanFromContext(ctx)
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	} else if len(results) == 1 {
		r := results[0]
		span.SetAttributes(attrMessageID.String(r.Run.ID), attrRun.String(r.Run.ID), attrDisposition.String(string(r.Disposition)))
	}
	span.End()
	o.m.triggered(ctx, t, results, err)
}

// sameJob is the job of all runs, or "" if they are of several.
func sameJob(runs []*durably.Run) string {
	if len(runs) == 0 {
		return ""
	}
	job := runs[0].JobName
	for _, r := range runs[1:] {
		if r.JobName != job {
			return ""
		}
	}
	return job
}

// encode is the trace context of ctx's span as the run stores it: a JSON
// object of the propagator's fields ("" when there is no span to join).
func (o *Observer) encode(ctx context.Context) string {
	carrier := propagation.MapCarrier{}
	o.propagator.Inject(ctx, carrier)
	if len(carrier) == 0 {
		return ""
	}
	b, err := json.Marshal(carrier)
	if err != nil { // a map of strings always encodes
		return ""
	}
	return string(b)
}

// decode is the context a stored trace context stands for; one that does
// not decode (written by another propagator, or damaged) gives a new trace
// rather than an error: tracing never stops a run.
func (o *Observer) decode(stored string) context.Context {
	ctx := context.Background()
	if stored == "" {
		return ctx
	}
	carrier := propagation.MapCarrier{}
	if err := json.Unmarshal([]byte(stored), &carrier); err != nil {
		return ctx
	}
	return o.propagator.Extract(ctx, carrier)
}

// StartExecution starts the execution's span (kind consumer) with the
// run's stored trace context as parent, and measures how long the run
// waited to be claimed.
func (o *Observer) StartExecution(ctx context.Context, x durably.ExecutionInfo) context.Context {
	run := x.Run
	// The stored context is the parent; ctx (the engine's, carrying no
	// span) only keeps its values.
	parent := trace.SpanContextFromContext(o.decode(run.TraceContext))
	if parent.IsValid() {
		ctx = trace.ContextWithRemoteSpanContext(ctx, parent)
	}
	ctx, _ = o.tracer.Start(ctx, opExecute+" "+run.JobName, trace.WithSpanKind(trace.SpanKindConsumer), trace.WithAttributes(
		attrSystem.String(system), attrOperation.String(opExecute), semconv.MessagingOperationTypeProcess,
		attrDestination.String(run.JobName), attrMessageID.String(run.ID), attrClientID.String(run.LeaseOwner),
		attrJob.String(run.JobName), attrRun.String(run.ID), attrRunAttempt.Int(x.Attempt),
	))
	o.m.executionStarted(ctx, x)
	return withStart(ctx)
}

// EndExecution ends the execution's span with its outcome and measures it.
func (o *Observer) EndExecution(ctx context.Context, x durably.ExecutionInfo, end durably.ExecutionEnd) {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attrRunOutcome.String(string(end.Outcome)))
	if failure(end.Outcome) {
		if end.Err != nil {
			span.RecordError(end.Err)
			span.SetStatus(codes.Error, end.Err.Error())
		} else {
			span.SetStatus(codes.Error, string(end.Outcome))
		}
	}
	span.End()
	o.m.executionEnded(ctx, x, end)
}

// failure reports whether an execution or step that ended so failed (its
// span's status is Error): not a suspension, a cancellation or a stop.
func failure(outcome durably.Ending) bool {
	switch outcome {
	case durably.EndFailed, durably.EndRetrying, durably.EndTimedOut, durably.EndLeaseLost, durably.EndReleased, durably.EndUnrecorded:
		return true
	}
	return false
}

// StartStep starts the step attempt's span, a child of its execution's.
func (o *Observer) StartStep(ctx context.Context, s durably.StepInfo) context.Context {
	ctx, _ = o.tracer.Start(ctx, "step "+s.Name, trace.WithAttributes(
		attrJob.String(s.Run.JobName), attrRun.String(s.Run.ID),
		attrStep.String(s.Name), attrStepIndex.Int(s.Index), attrStepAttempt.Int(s.Attempt),
	))
	return withStart(ctx)
}

// EndStep ends the step attempt's span with its outcome and measures it.
func (o *Observer) EndStep(ctx context.Context, s durably.StepInfo, end durably.StepEnd) {
	span := trace.SpanFromContext(ctx)
	span.SetAttributes(attrStepOutcome.String(string(end.Outcome)))
	if failure(end.Outcome) && end.Err != nil {
		span.RecordError(end.Err)
		span.SetStatus(codes.Error, end.Err.Error())
	}
	span.End()
	o.m.stepEnded(ctx, s, end)
}
