package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/durably-go/durably/internal/groupcommit"
	"github.com/durably-go/durably/internal/storekit"
	"github.com/durably-go/durably/runtime/pgstore/internal/pgdb"
	"github.com/durably-go/durably/store"
)

type opKind int

const (
	opEnqueue opKind = iota
	opLogs
	opProgress
	opSaveStep
	opRenew
	opFinish
	opPublish
	opFunc
)

// op is one write for the writer. Writes of the same kind from different
// callers become one array statement; results come back in the op.
type op struct {
	kind opKind

	lease     store.Lease
	now       time.Time
	items     []store.NewRun // opEnqueue
	logs      []*store.Log   // opLogs
	progress  string         // opProgress
	step      *store.Step    // opSaveStep
	expiresAt time.Time      // opRenew
	fin       store.Finish   // opFinish
	payloads  [][]byte       // opPublish
	fn        func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) error
	bulk      bool // opFunc of a size the caller chose: bounded by Options.BulkTimeout

	ok       bool
	enqueued []store.Enqueued
	conflict error
	err      error // a failure of this op alone, after its group committed
}

// pipelined reports whether the op is a single array-statement write that
// can share the group's pipeline. Batch triggers, which must be undone alone
// on a conflict, and one-off operations get transactions of their own.
func (o *op) pipelined() bool {
	switch o.kind {
	case opFunc:
		return false
	case opEnqueue:
		return len(o.items) == 1
	}
	return true
}

// apply commits a group. The pipelined writes of all callers go to the
// server in one pipeline: one round trip, one implicit transaction, one WAL
// flush, under groupcommit's failure policy (Grouped). The pipeline, and
// each operation run alone, has the bound of a call (Options.Timeout, or
// BulkTimeout), so that a connection that stops answering holds the writer,
// and every run's writes behind it, no longer.
func (s *Store) apply(ctx context.Context, ops []*op) []error {
	errs := make([]error, len(ops))
	var piped []int
	for i, o := range ops {
		o.ok, o.enqueued, o.conflict, o.err = false, nil, nil, nil
		if o.pipelined() {
			piped = append(piped, i)
		}
	}
	group := make([]*op, len(piped))
	for k, i := range piped {
		group[k] = ops[i]
	}
	reset := func(o *op) { o.ok, o.enqueued, o.conflict, o.err = false, nil, nil, nil }
	pipeline := func(ctx context.Context, ops []*op) error {
		ctx, cancel := s.bound(ctx)
		defer cancel()
		return s.failed(ctx, s.pipeline(ctx, ops))
	}
	// A transient failure (the database out of reach) fails the rest of
	// the group alike, as Grouped does within the pipeline: trying each
	// operation alone would only wait on the same silence again.
	var down error
	for k, err := range groupcommit.Grouped(ctx, group, pipeline, transient, reset) {
		if err == nil {
			err = group[k].err
		} else if transient(err) {
			down = err
		}
		errs[piped[k]] = err
	}
	for i, o := range ops {
		if o.pipelined() {
			continue
		}
		if down != nil {
			errs[i] = down
			continue
		}
		if errs[i] = s.runAlone(ctx, o); errs[i] != nil && transient(errs[i]) {
			down = errs[i]
		}
	}
	for i := range errs {
		errs[i] = classify(errs[i])
	}
	return errs
}

// runAlone runs a one-off operation or a batch trigger in its own
// transaction, within its bound.
func (s *Store) runAlone(ctx context.Context, o *op) (err error) {
	ctx, cancel := s.opDeadline(ctx, o)
	defer cancel()
	defer func() { err = s.failed(ctx, err) }()
	err = pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		q := pgdb.New(tx)
		if o.kind == opFunc {
			return o.fn(ctx, tx, q)
		}
		res, err := storekit.Enqueue(ctx, enqueueOps{q: q, s: s}, o.items)
		var ce *store.ConflictError
		if errors.As(err, &ce) {
			o.conflict = err
			return errRollback
		}
		o.enqueued = res
		return err
	})
	if errors.Is(err, errRollback) {
		return nil
	}
	if err == nil {
		s.stats.commits.Add(1)
		s.stats.writes.Add(1)
	}
	return err
}

type writeStats struct{ commits, writes atomic.Int64 }

// WriteStats reports the write transactions the store committed (groups,
// claims, one-off writes) and the writes they carried.
func (s *Store) WriteStats() store.WriteStats {
	return store.WriteStats{Commits: s.stats.commits.Load(), Writes: s.stats.writes.Load()}
}

// errRollback ends a transaction whose outcome is already recorded in its op.
var errRollback = errors.New("pgstore: rolled back")

// pipeline sends the group's writes, one array statement per kind, in one
// pgx batch. The statements are sqlc's: a recorder stands in for the
// connection, captures what each generated method would send, and the
// batch sends it (sqlc's own batch support sends one query kind per batch).
func (s *Store) pipeline(ctx context.Context, ops []*op) error {
	g := newGroupBatch(ops)
	s.queueTriggers(ctx, g)
	g.queueRunWrites(ctx)
	s.queuePublished(ctx, g)
	if err := s.pool.SendBatch(ctx, &g.b).Close(); err != nil {
		return fmt.Errorf("pgstore: commit group: %w", err)
	}
	s.stats.commits.Add(1)
	s.stats.writes.Add(int64(len(ops)))
	g.settle()
	s.explainTriggers(ctx, g)
	return nil
}

// groupBatch is a group's statements, queued for one round trip, and what
// their rows answer.
type groupBatch struct {
	b      pgx.Batch
	rec    recorder
	q      *pgdb.Queries // sqlc's statements, captured by rec
	byKind map[opKind][]*op

	// The single-item triggers of all callers, inserted by one statement.
	triggers    []*op
	items       []store.NewRun
	runs        []*store.Run // items' rows as inserted
	insertedIDs []string

	stepIDs                       []string
	progressed, renewed, finished []store.Lease
}

func newGroupBatch(ops []*op) *groupBatch {
	g := &groupBatch{byKind: map[opKind][]*op{}}
	g.q = pgdb.New(&g.rec)
	for _, o := range ops {
		g.byKind[o.kind] = append(g.byKind[o.kind], o)
	}
	return g
}

// queueTriggers queues one insert of the single-item triggers of all
// callers.
func (s *Store) queueTriggers(ctx context.Context, g *groupBatch) {
	g.triggers = g.byKind[opEnqueue]
	if len(g.triggers) == 0 {
		return
	}
	g.items = make([]store.NewRun, len(g.triggers))
	for i, o := range g.triggers {
		g.items[i] = o.items[0]
	}
	g.runs = storekit.PrepareRuns(g.items)
	if p := s.insertParams(g.runs); len(g.runs) == 1 {
		_, _ = g.q.InsertRun(ctx, oneRunParams(p))
	} else {
		_, _ = g.q.InsertRuns(ctx, p)
	}
	g.rec.queueRows(&g.b, func(rows pgx.Rows) error {
		for rows.Next() {
			var id string
			var notified int64
			if err := rows.Scan(&id, &notified); err != nil {
				return err
			}
			g.insertedIDs = append(g.insertedIDs, id)
		}
		return rows.Err()
	})
}

// queueRunWrites queues the writes of runs in flight: logs, progress,
// steps, renewals and finishes, one statement per kind.
func (g *groupBatch) queueRunWrites(ctx context.Context) {
	if logs := g.byKind[opLogs]; len(logs) > 0 {
		_ = g.q.InsertLogs(ctx, logsParams(logs))
		g.rec.queueExec(&g.b)
	}
	if ps := g.byKind[opProgress]; len(ps) > 0 {
		_, _ = g.q.SetProgress(ctx, progressParams(ps))
		g.rec.queueLeases(&g.b, &g.progressed)
	}
	// Steps carried by finishes go first, in the same statement as the
	// others: a finish is refused exactly when its steps are.
	// A group of one step or one finish, the usual case with few runs in
	// flight, takes the one-row statements: the arrays' unnest, aggregate
	// and join cost more than the write itself.
	if steps := stepsParams(g.byKind[opSaveStep], g.byKind[opFinish]); len(steps.Ids) == 1 {
		_, _ = g.q.SaveStep(ctx, oneStepParams(steps))
		g.rec.queueIDs(&g.b, &g.stepIDs)
	} else if len(steps.Ids) > 1 {
		_, _ = g.q.SaveSteps(ctx, steps)
		g.rec.queueIDs(&g.b, &g.stepIDs)
	}
	if rs := g.byKind[opRenew]; len(rs) > 0 {
		_, _ = g.q.RenewLeases(ctx, renewParams(rs))
		g.rec.queueLeases(&g.b, &g.renewed)
	}
	if fs := g.byKind[opFinish]; len(fs) == 1 {
		_, _ = g.q.FinishRun(ctx, oneFinishParams(fs[0]))
		g.rec.queueLeases(&g.b, &g.finished)
	} else if len(fs) > 1 {
		_, _ = g.q.FinishRuns(ctx, finishParams(fs))
		g.rec.queueLeases(&g.b, &g.finished)
	}
}

// queuePublished queues the notifications of the events to publish (D3),
// and the rows of those too large for a notification.
func (s *Store) queuePublished(ctx context.Context, g *groupBatch) {
	pubs := g.byKind[opPublish]
	if len(pubs) == 0 {
		return
	}
	notifications, oversized := s.packEvents(pubs)
	now := ts(time.Now())
	for _, p := range oversized {
		id := s.ids.New(time.Now())
		_ = g.q.InsertEventPayload(ctx, pgdb.InsertEventPayloadParams{ID: id, Payload: string(p), CreatedAt: now})
		g.rec.queueExec(&g.b)
		notifications = append(notifications, "r:"+s.instance+":"+id)
	}
	for _, n := range notifications {
		_ = g.q.Notify(ctx, pgdb.NotifyParams{Channel: s.channel, Payload: n})
		g.rec.queueExec(&g.b)
	}
}

// settle tells each fenced write of the committed group whether it
// applied. A run's writes are matched by lease, not by run: a stale holder
// and the live one can meet in one group, and only the live one's applied.
func (g *groupBatch) settle() {
	for _, o := range g.byKind[opProgress] {
		o.ok = slices.Contains(g.progressed, o.lease)
	}
	for _, o := range g.byKind[opSaveStep] {
		o.ok = slices.Contains(g.stepIDs, o.step.ID)
	}
	for _, o := range g.byKind[opRenew] {
		o.ok = slices.Contains(g.renewed, o.lease)
	}
	for _, o := range g.byKind[opFinish] {
		o.ok = slices.Contains(g.finished, o.lease)
	}
}

// explainTriggers answers the group's triggers once it is committed; one
// that inserted nothing is an idempotent hit, a coalesce, or a conflict
// (S-025). It wrote nothing, so there is nothing to undo.
func (s *Store) explainTriggers(ctx context.Context, g *groupBatch) {
	eo := enqueueOps{q: s.q, s: s}
	for i, o := range g.triggers {
		inserted := []bool{slices.Contains(g.insertedIDs, g.runs[i].ID)}
		res, err := storekit.Resolve(ctx, eo, g.items[i:i+1], g.runs[i:i+1], inserted)
		var ce *store.ConflictError
		switch {
		case errors.As(err, &ce):
			o.conflict = err
		case err != nil:
			o.err = err
		default:
			o.enqueued = res
		}
	}
}

type recorder struct {
	sql  string
	args []any
}

func (r *recorder) Exec(_ context.Context, sql string, args ...any) (pgconn.CommandTag, error) {
	r.sql, r.args = sql, args
	return pgconn.CommandTag{}, nil
}

func (r *recorder) Query(_ context.Context, sql string, args ...any) (pgx.Rows, error) {
	r.sql, r.args = sql, args
	return emptyRows{}, nil
}

func (r *recorder) QueryRow(_ context.Context, sql string, args ...any) pgx.Row {
	r.sql, r.args = sql, args
	return emptyRow{}
}

func (r *recorder) queueExec(b *pgx.Batch) {
	b.Queue(r.sql, r.args...)
}

func (r *recorder) queueRows(b *pgx.Batch, read func(pgx.Rows) error) {
	b.Queue(r.sql, r.args...).Query(read)
}

// queueLeases queues the recorded statement, collecting the (id,
// generation) rows it returns into dst.
func (r *recorder) queueLeases(b *pgx.Batch, dst *[]store.Lease) {
	r.queueRows(b, func(rows pgx.Rows) error {
		for rows.Next() {
			var l store.Lease
			if err := rows.Scan(&l.RunID, &l.Generation); err != nil {
				return err
			}
			*dst = append(*dst, l)
		}
		return rows.Err()
	})
}

// queueIDs queues the recorded statement and collects the first column of
// its rows.
func (r *recorder) queueIDs(b *pgx.Batch, dst *[]string) {
	r.queueRows(b, func(rows pgx.Rows) error {
		for rows.Next() {
			var id string
			if err := rows.Scan(&id); err != nil {
				return err
			}
			*dst = append(*dst, id)
		}
		return rows.Err()
	})
}

// emptyRows is what the recorder hands the generated code: no rows.
type emptyRows struct{}

func (emptyRows) Close()                                       {}
func (emptyRows) Err() error                                   { return nil }
func (emptyRows) CommandTag() pgconn.CommandTag                { return pgconn.CommandTag{} }
func (emptyRows) FieldDescriptions() []pgconn.FieldDescription { return nil }
func (emptyRows) Next() bool                                   { return false }
func (emptyRows) Scan(...any) error                            { return nil }
func (emptyRows) Values() ([]any, error)                       { return nil, nil }
func (emptyRows) RawValues() [][]byte                          { return nil }
func (emptyRows) Conn() *pgx.Conn                              { return nil }
func (emptyRows) TypeMap() *pgtype.Map                         { return nil }

type emptyRow struct{}

func (emptyRow) Scan(...any) error { return pgx.ErrNoRows }

func (s *Store) insertParams(runs []*store.Run) pgdb.InsertRunsParams {
	p := pgdb.InsertRunsParams{
		Ids: make([]string, len(runs)), Statuses: make([]string, len(runs)), LeaseOwners: make([]string, len(runs)),
		LeaseExpiresAts: make([]pgtype.Timestamptz, len(runs)), LeaseGenerations: make([]int64, len(runs)), StartedAts: make([]pgtype.Timestamptz, len(runs)),
		JobNames: make([]string, len(runs)), Inputs: make([]string, len(runs)),
		IdempotencyKeys: make([]string, len(runs)), ConcurrencyKeys: make([]string, len(runs)), KeyScopes: make([]string, len(runs)),
		Labels: make([]string, len(runs)), CreatedAts: make([]pgtype.Timestamptz, len(runs)),
		RunAts: make([]pgtype.Timestamptz, len(runs)), Readies: make([]int64, len(runs)), Priorities: make([]int64, len(runs)),
		TraceContexts: make([]string, len(runs)), ParentRunIds: make([]string, len(runs)),
		LabelRunIds: []string{}, LabelKeys: []string{}, LabelValues: []string{},
		Channel: s.channel, Payload: "w:" + s.instance,
	}
	for i, r := range runs {
		p.Ids[i], p.JobNames[i], p.Inputs[i] = r.ID, r.JobName, string(r.Input)
		p.Statuses[i], p.LeaseOwners[i], p.LeaseGenerations[i] = string(r.Status), r.LeaseOwner, r.LeaseGeneration
		p.LeaseExpiresAts[i], p.StartedAts[i] = ts(r.LeaseExpiresAt), ts(r.StartedAt)
		p.IdempotencyKeys[i], p.ConcurrencyKeys[i], p.KeyScopes[i] = r.IdempotencyKey, r.ConcurrencyKey, r.KeyScope
		p.Labels[i], p.CreatedAts[i] = storekit.EncodeLabels(r.Labels), ts(r.CreatedAt)
		p.RunAts[i], p.Readies[i], p.Priorities[i] = ts(r.RunAt), storekit.Ready(r), int64(r.Priority)
		p.TraceContexts[i], p.ParentRunIds[i] = r.TraceContext, r.ParentRunID
		for _, k := range store.SortedKeys(r.Labels) {
			p.LabelRunIds = append(p.LabelRunIds, r.ID)
			p.LabelKeys = append(p.LabelKeys, k)
			p.LabelValues = append(p.LabelValues, r.Labels[k])
		}
	}
	return p
}

// enqueueOps runs the shared enqueue algorithm's primitives on q.
type enqueueOps struct {
	q *pgdb.Queries
	s *Store
}

func (e enqueueOps) Insert(ctx context.Context, runs []*store.Run) ([]bool, error) {
	rows, err := e.q.InsertRuns(ctx, e.s.insertParams(runs))
	if err != nil {
		return nil, fmt.Errorf("pgstore: insert runs: %w", err)
	}
	inserted := make([]bool, len(runs))
	for i, r := range runs {
		inserted[i] = slices.ContainsFunc(rows, func(row pgdb.InsertRunsRow) bool { return row.ID == r.ID })
	}
	return inserted, nil
}

func (e enqueueOps) ByIdempotencyKey(ctx context.Context, job, scope, key string) (*store.Run, error) {
	return optionalRun(e.q.GetRunByIdempotencyKey(ctx, pgdb.GetRunByIdempotencyKeyParams{JobName: job, KeyScope: scope, IdempotencyKey: text(key)}))
}

func (e enqueueOps) PendingByConcurrencyKey(ctx context.Context, job, scope, key string) (*store.Run, error) {
	return optionalRun(e.q.GetPendingRunByConcurrencyKey(ctx, pgdb.GetPendingRunByConcurrencyKeyParams{JobName: job, KeyScope: scope, ConcurrencyKey: text(key)}))
}

func logsParams(ops []*op) pgdb.InsertLogsParams {
	var p pgdb.InsertLogsParams
	for _, o := range ops {
		for _, l := range o.logs {
			p.Ids = append(p.Ids, l.ID)
			p.RunIds = append(p.RunIds, l.RunID)
			p.StepNames = append(p.StepNames, l.StepName)
			p.Levels = append(p.Levels, l.Level)
			p.Messages = append(p.Messages, l.Message)
			p.Datas = append(p.Datas, string(l.Data))
			p.CreatedAts = append(p.CreatedAts, ts(l.CreatedAt))
		}
	}
	return p
}

// progressParams keeps the latest progress of each lease: an UPDATE … FROM
// with two matching source rows for one target row would apply only one of
// them, unpredictably. Two leases of one run (a stale and the live one)
// both stay: the generation fence lets only the live one match.
func progressParams(ops []*op) pgdb.SetProgressParams {
	latest := map[store.Lease]int{}
	for i, o := range ops {
		latest[o.lease] = i
	}
	var p pgdb.SetProgressParams
	var now time.Time
	for i, o := range ops {
		if latest[o.lease] != i {
			continue
		}
		p.Ids = append(p.Ids, o.lease.RunID)
		p.Generations = append(p.Generations, o.lease.Generation)
		p.Progresses = append(p.Progresses, o.progress)
		if o.now.After(now) {
			now = o.now
		}
	}
	p.Now = ts(now)
	return p
}

// oneRunParams is the one run of p (InsertRuns' arrays) for InsertRun.
func oneRunParams(p pgdb.InsertRunsParams) pgdb.InsertRunParams {
	return pgdb.InsertRunParams{
		ID: p.Ids[0], JobName: p.JobNames[0], Input: p.Inputs[0], Status: p.Statuses[0],
		IdempotencyKey: p.IdempotencyKeys[0], ConcurrencyKey: p.ConcurrencyKeys[0], KeyScope: p.KeyScopes[0],
		Labels: p.Labels[0], LeaseOwner: p.LeaseOwners[0], LeaseExpiresAt: p.LeaseExpiresAts[0],
		LeaseGeneration: p.LeaseGenerations[0], StartedAt: p.StartedAts[0], CreatedAt: p.CreatedAts[0],
		RunAt: p.RunAts[0], Ready: p.Readies[0], Priority: p.Priorities[0], TraceContext: p.TraceContexts[0], ParentRunID: p.ParentRunIds[0],
		LabelKeys: p.LabelKeys, LabelValues: p.LabelValues, Channel: p.Channel, Payload: p.Payload,
	}
}

// oneStepParams is the one step of p (SaveSteps' arrays) for SaveStep.
func oneStepParams(p pgdb.SaveStepsParams) pgdb.SaveStepParams {
	one := pgdb.SaveStepParams{
		ID: p.Ids[0], Name: p.Names[0], StepIndex: p.StepIndexes[0], Status: p.Statuses[0],
		Output: p.Outputs[0], Error: p.Errors[0], StartedAt: p.StartedAts[0], CompletedAt: p.CompletedAts[0],
		Attempt: p.Attempts[0], RunID: p.RunIds[0], Generation: p.Generations[0],
	}
	if one.Status == string(store.StepCompleted) {
		one.NextIndex = pgtype.Int8{Int64: one.StepIndex + 1, Valid: true}
		one.CompletedInc = 1
		one.AdvancedAt = one.CompletedAt
	}
	return one
}

func oneFinishParams(o *op) pgdb.FinishRunParams {
	return pgdb.FinishRunParams{
		ID: o.lease.RunID, Generation: o.lease.Generation, Status: string(o.fin.Status),
		Output: string(o.fin.Output), Error: o.fin.Error, Attempts: storekit.EncodeAttempts(o.fin.Attempts), DeleteSteps: o.fin.DeleteSteps,
		CurrentStepIndex: int64(o.fin.CurrentStepIndex), CompletedStepCount: int64(o.fin.CompletedStepCount),
		Now: ts(o.fin.Now),
	}
}

func stepsParams(saves, finishes []*op) pgdb.SaveStepsParams {
	var p pgdb.SaveStepsParams
	add := func(lease store.Lease, st *store.Step) {
		p.Ids = append(p.Ids, st.ID)
		p.RunIds = append(p.RunIds, lease.RunID)
		p.Generations = append(p.Generations, lease.Generation)
		p.Names = append(p.Names, st.Name)
		p.StepIndexes = append(p.StepIndexes, int64(st.Index))
		p.Statuses = append(p.Statuses, string(st.Status))
		p.Outputs = append(p.Outputs, string(st.Output))
		p.Errors = append(p.Errors, st.Error)
		p.StartedAts = append(p.StartedAts, ts(st.StartedAt))
		p.CompletedAts = append(p.CompletedAts, ts(st.CompletedAt))
		p.Attempts = append(p.Attempts, storekit.StepAttempt(st))
	}
	for _, o := range saves {
		add(o.lease, o.step)
	}
	for _, o := range finishes {
		for _, st := range o.fin.Steps {
			add(o.lease, st)
		}
	}
	return p
}

func renewParams(ops []*op) pgdb.RenewLeasesParams {
	var p pgdb.RenewLeasesParams
	for _, o := range ops {
		p.Ids = append(p.Ids, o.lease.RunID)
		p.Generations = append(p.Generations, o.lease.Generation)
		p.LeaseExpiresAts = append(p.LeaseExpiresAts, ts(o.expiresAt))
		p.Nows = append(p.Nows, ts(o.now))
	}
	return p
}

func finishParams(ops []*op) pgdb.FinishRunsParams {
	var p pgdb.FinishRunsParams
	for _, o := range ops {
		p.Ids = append(p.Ids, o.lease.RunID)
		p.Nows = append(p.Nows, ts(o.fin.Now))
		p.Generations = append(p.Generations, o.lease.Generation)
		p.Statuses = append(p.Statuses, string(o.fin.Status))
		p.Outputs = append(p.Outputs, string(o.fin.Output))
		p.Errors = append(p.Errors, o.fin.Error)
		p.Attempts = append(p.Attempts, storekit.EncodeAttempts(o.fin.Attempts))
		p.DeleteSteps = append(p.DeleteSteps, o.fin.DeleteSteps)
		p.CurrentStepIndexes = append(p.CurrentStepIndexes, int64(o.fin.CurrentStepIndex))
		p.CompletedStepCounts = append(p.CompletedStepCounts, int64(o.fin.CompletedStepCount))
	}
	return p
}
