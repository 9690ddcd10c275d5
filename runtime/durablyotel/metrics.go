package durablyotel

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/semconv/v1.43.0/messagingconv"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/store"
)

// Bucket boundaries, in seconds. Steps and executions: the conventions'
// advice for durations, stretched to minutes. Runs and the wait in the
// queue: on to an hour and a day, since runs sleep and wait to be retried.
var (
	shortBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60, 300}
	longBuckets  = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400, 86400}
)

// instruments are the Observer's metrics (docs/observability.md).
type instruments struct {
	meter     metric.Meter
	sent      messagingconv.ClientSentMessages
	sendTime  messagingconv.ClientOperationDuration
	consumed  messagingconv.ClientConsumedMessages
	process   messagingconv.ProcessDuration
	ended     metric.Int64Counter
	runTime   metric.Float64Histogram
	delay     metric.Float64Histogram
	stepTime  metric.Float64Histogram
	leaseLost metric.Int64Counter
	outages   metric.Int64Counter
	downTime  metric.Float64Histogram
}

func newInstruments(m metric.Meter) (*instruments, error) {
	in := &instruments{meter: m}
	var errs []error
	note := func(err error) {
		if err != nil {
			errs = append(errs, err)
		}
	}
	var err error
	in.sent, err = messagingconv.NewClientSentMessages(m)
	note(err)
	in.sendTime, err = messagingconv.NewClientOperationDuration(m, metric.WithExplicitBucketBoundaries(shortBuckets...))
	note(err)
	in.consumed, err = messagingconv.NewClientConsumedMessages(m)
	note(err)
	in.process, err = messagingconv.NewProcessDuration(m, metric.WithExplicitBucketBoundaries(shortBuckets...))
	note(err)
	in.ended, err = m.Int64Counter("durably.runs.ended", metric.WithUnit("{run}"),
		metric.WithDescription("Runs that ended: completed, failed or cancelled, by the process that ended them."))
	note(err)
	in.runTime, err = m.Float64Histogram("durably.run.duration", metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(longBuckets...),
		metric.WithDescription("Time from a run's creation to its recorded end (completed or failed)."))
	note(err)
	in.delay, err = m.Float64Histogram("durably.run.claim_delay", metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(longBuckets...),
		metric.WithDescription("Time from when a run became claimable to its claim."))
	note(err)
	in.stepTime, err = m.Float64Histogram("durably.step.duration", metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(shortBuckets...),
		metric.WithDescription("Duration of a step attempt's function."))
	note(err)
	in.leaseLost, err = m.Int64Counter("durably.lease.losses", metric.WithUnit("{lease}"),
		metric.WithDescription("Executions that lost their run's lease."))
	note(err)
	in.outages, err = m.Int64Counter("durably.store.outages", metric.WithUnit("{outage}"),
		metric.WithDescription("Times the database became unavailable to the engine."))
	note(err)
	in.downTime, err = m.Float64Histogram("durably.store.outage.duration", metric.WithUnit("s"), metric.WithExplicitBucketBoundaries(longBuckets...),
		metric.WithDescription("How long the database stayed unavailable, recorded when it answered again."))
	note(err)
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("durablyotel: make instruments: %w", err)
	}
	return in, nil
}

// observeWaiting registers durably.runs.waiting, read from the stores of
// the engines attached at each collection.
func (in *instruments) observeWaiting(engines func() []*durably.Engine) error {
	_, err := in.meter.Int64ObservableGauge("durably.runs.waiting", metric.WithUnit("{run}"),
		metric.WithDescription("Pending runs in the database, by job: due (claimable) or waiting for a later time."),
		metric.WithInt64Callback(func(ctx context.Context, obs metric.Int64Observer) error {
			return observeWaiting(ctx, obs, engines())
		}))
	if err != nil {
		return fmt.Errorf("durablyotel: make instrument durably.runs.waiting: %w", err)
	}
	return nil
}

func observeWaiting(ctx context.Context, obs metric.Int64Observer, engines []*durably.Engine) error {
	seen := map[store.Store]bool{}
	var errs []error
	for _, e := range engines {
		st := e.Store()
		pc, ok := st.(store.PendingCounter)
		if !ok || seen[st] {
			continue
		}
		seen[st] = true
		counts, err := pc.CountPending(ctx, time.Now())
		if err != nil {
			errs = append(errs, fmt.Errorf("durablyotel: durably.runs.waiting: %w", err))
			continue
		}
		for _, c := range counts {
			obs.Observe(int64(c.Due), metric.WithAttributes(attrJob.String(c.JobName), attrRunDue.Bool(true)))
			obs.Observe(int64(c.Later), metric.WithAttributes(attrJob.String(c.JobName), attrRunDue.Bool(false)))
		}
	}
	return errors.Join(errs...)
}

// triggered counts a trigger's runs (one per run asked for, with how it
// was satisfied, or the error) and measures its write.
func (in *instruments) triggered(ctx context.Context, t durably.TriggerInfo, results []durably.TriggerResult, err error) {
	if err != nil {
		et := attrErrorType.String(errorType(err))
		for _, r := range t.Runs {
			in.sent.Add(ctx, 1, opTrigger, system, attrDestination.String(r.JobName), et)
		}
	} else {
		for _, r := range results {
			in.sent.Add(ctx, 1, opTrigger, system, attrDestination.String(r.Run.JobName), attrDisposition.String(string(r.Disposition)))
		}
	}
	attrs := []attribute.KeyValue{attrOperationTyp.String(string(messagingconv.OperationTypeSend))}
	if job := sameJob(t.Runs); job != "" {
		attrs = append(attrs, attrDestination.String(job))
	}
	if err != nil {
		attrs = append(attrs, attrErrorType.String(errorType(err)))
	}
	in.sendTime.Record(ctx, since(ctx), opTrigger, system, attrs...)
}

func (in *instruments) executionStarted(ctx context.Context, x durably.ExecutionInfo) {
	job := x.Run.JobName
	in.consumed.Add(ctx, 1, opExecute, system, attrDestination.String(job))
	if !x.Due.IsZero() && !x.Claimed.IsZero() {
		in.delay.Record(ctx, max(0, x.Claimed.Sub(x.Due).Seconds()), metric.WithAttributes(attrJob.String(job)))
	}
}

func (in *instruments) executionEnded(ctx context.Context, x durably.ExecutionInfo, end durably.ExecutionEnd) {
	run := x.Run
	attrs := []attribute.KeyValue{attrDestination.String(run.JobName), attrRunOutcome.String(string(end.Outcome))}
	if failure(end.Outcome) {
		attrs = append(attrs, attrErrorType.String(string(end.Outcome)))
	}
	in.process.Record(ctx, since(ctx), opExecute, system, attrs...)
	switch end.Outcome {
	case durably.EndCompleted, durably.EndFailed, durably.EndTimedOut:
		status := durably.StatusCompleted
		if end.Outcome != durably.EndCompleted {
			status = durably.StatusFailed
		}
		in.runTime.Record(ctx, max(0, time.Since(run.CreatedAt).Seconds()),
			metric.WithAttributes(attrJob.String(run.JobName), attrRunStatus.String(string(status))))
	case durably.EndLeaseLost:
		in.leaseLost.Add(ctx, 1, metric.WithAttributes(attrJob.String(run.JobName)))
	}
}

func (in *instruments) stepEnded(ctx context.Context, s durably.StepInfo, end durably.StepEnd) {
	in.stepTime.Record(ctx, since(ctx), metric.WithAttributes(attrJob.String(s.Run.JobName), attrStep.String(s.Name),
		attrStepOutcome.String(string(end.Outcome))))
}

// event counts the runs that end here, from the engine's events: every
// path that ends a run emits one (a finish, a job not registered, a
// cancellation from any caller). Events from other processes are theirs
// to count.
func (in *instruments) event(ev durably.Event) {
	if ev.Remote() {
		return
	}
	var status durably.Status
	switch ev.Type {
	case durably.EventRunComplete:
		status = durably.StatusCompleted
	case durably.EventRunFail:
		status = durably.StatusFailed
	case durably.EventRunCancel:
		status = durably.StatusCancelled
	default:
		return
	}
	in.ended.Add(context.Background(), 1, metric.WithAttributes(attrJob.String(ev.JobName), attrRunStatus.String(string(status))))
}

// outage counts an outage as it begins and measures it as it ends.
func (in *instruments) outage(info durably.OutageInfo) {
	ctx := context.Background()
	if info.Down {
		in.outages.Add(ctx, 1, metric.WithAttributes(attrStoreOp.String(info.Op)))
		return
	}
	in.downTime.Record(ctx, info.Lasted.Seconds())
}
