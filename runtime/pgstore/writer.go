package pgstore

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/durably-go/durably/runtime/pgstore/internal/pgdb"
	"github.com/durably-go/durably/runtime/store"
)

type opKind int

const (
	opEnqueue opKind = iota
	opLogs
	opProgress
	opSaveStep
	opRenew
	opFinish
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
	fn        func(ctx context.Context, tx pgx.Tx, q *pgdb.Queries) error

	ok       bool
	enqueued []store.Enqueued
	conflict error
}

// dbtx is what both a pool (autocommit) and a transaction offer.
type dbtx interface {
	pgdb.DBTX
	Begin(ctx context.Context) (pgx.Tx, error)
}

// apply commits a group: all of it in one transaction; when that fails,
// each op alone, so that one failing op fails only its caller.
func (s *Store) apply(ctx context.Context, ops []*op) []error {
	errs := make([]error, len(ops))
	err := s.runGroup(ctx, ops)
	if err == nil {
		return errs
	}
	if len(ops) == 1 {
		errs[0] = err
		return errs
	}
	for i := range ops {
		errs[i] = s.runGroup(ctx, ops[i:i+1])
	}
	return errs
}

// singleStatement reports whether op alone is one statement, which then
// runs without BEGIN/COMMIT round trips.
func singleStatement(o *op) bool {
	switch o.kind {
	case opLogs, opProgress, opSaveStep, opRenew, opFinish:
		return true
	}
	return false
}

func (s *Store) runGroup(ctx context.Context, ops []*op) error {
	for _, o := range ops {
		o.ok, o.enqueued, o.conflict = false, nil, nil
	}
	if len(ops) == 1 && (singleStatement(ops[0]) || (ops[0].kind == opEnqueue && len(ops[0].items) == 1)) {
		return s.applyOps(ctx, s.pool, ops)
	}
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		return s.applyOps(ctx, tx, ops)
	})
}

// applyOps issues the group's statements: triggers first, then logs (before
// any finish that deletes them), progress, steps, renewals, finishes, and
// the one-off operations.
func (s *Store) applyOps(ctx context.Context, db dbtx, ops []*op) error {
	q := pgdb.New(db)
	byKind := map[opKind][]*op{}
	for _, o := range ops {
		byKind[o.kind] = append(byKind[o.kind], o)
	}
	created, err := s.applyEnqueues(ctx, db, q, byKind[opEnqueue])
	if err != nil {
		return err
	}
	if err := applyLogs(ctx, q, byKind[opLogs]); err != nil {
		return err
	}
	if err := applyProgress(ctx, q, byKind[opProgress]); err != nil {
		return err
	}
	if err := applySteps(ctx, q, byKind[opSaveStep]); err != nil {
		return err
	}
	if err := applyRenewals(ctx, q, byKind[opRenew]); err != nil {
		return err
	}
	if err := applyFinishes(ctx, q, byKind[opFinish]); err != nil {
		return err
	}
	for _, o := range byKind[opFunc] {
		tx, ok := db.(pgx.Tx)
		if !ok {
			return errors.New("pgstore: one-off operation outside a transaction")
		}
		if err := o.fn(ctx, tx, q); err != nil {
			return err
		}
	}
	if created {
		if err := q.Notify(ctx, pgdb.NotifyParams{Channel: s.channel, Payload: "w:" + s.instance}); err != nil {
			return fmt.Errorf("pgstore: notify: %w", err)
		}
	}
	return nil
}

// applyEnqueues inserts the single-item triggers of all callers in one
// statement and resolves each; batch triggers, which must be undone alone
// on a conflict, each get a savepoint. It reports whether any run was
// created.
func (s *Store) applyEnqueues(ctx context.Context, db dbtx, q *pgdb.Queries, ops []*op) (bool, error) {
	if len(ops) == 0 {
		return false, nil
	}
	created := false
	var singles []*op
	for _, o := range ops {
		if len(o.items) == 1 {
			singles = append(singles, o)
			continue
		}
		sp, err := db.Begin(ctx) // a savepoint inside the group's transaction
		if err != nil {
			return false, err
		}
		res, err := store.Enqueue(ctx, enqueueOps{pgdb.New(sp)}, o.items)
		var ce *store.ConflictError
		switch {
		case errors.As(err, &ce):
			o.conflict = err
			if err := sp.Rollback(ctx); err != nil {
				return false, err
			}
			continue
		case err != nil:
			_ = sp.Rollback(ctx)
			return false, err
		}
		if err := sp.Commit(ctx); err != nil {
			return false, err
		}
		o.enqueued = res
		created = created || anyCreated(res)
	}
	if len(singles) == 0 {
		return created, nil
	}
	items := make([]store.NewRun, len(singles))
	for i, o := range singles {
		items[i] = o.items[0]
	}
	runs := store.PrepareRuns(items)
	eo := enqueueOps{q}
	inserted, err := eo.Insert(ctx, runs)
	if err != nil {
		return false, err
	}
	for i, o := range singles {
		res, err := store.Resolve(ctx, eo, items[i:i+1], runs[i:i+1], inserted[i:i+1])
		var ce *store.ConflictError
		switch {
		case errors.As(err, &ce):
			ce.Index = 0
			o.conflict = ce
		case err != nil:
			return false, err
		default:
			o.enqueued = res
			created = created || anyCreated(res)
		}
	}
	return created, nil
}

func anyCreated(res []store.Enqueued) bool {
	for _, r := range res {
		if r.Disposition == store.Created {
			return true
		}
	}
	return false
}

type enqueueOps struct{ q *pgdb.Queries }

func (e enqueueOps) Insert(ctx context.Context, runs []*store.Run) ([]bool, error) {
	p := pgdb.InsertRunsParams{
		Ids: make([]string, len(runs)), JobNames: make([]string, len(runs)), Inputs: make([]string, len(runs)),
		IdempotencyKeys: make([]string, len(runs)), ConcurrencyKeys: make([]string, len(runs)),
		Labels: make([]string, len(runs)), CreatedAts: make([]string, len(runs)),
		LabelRunIds: []string{}, LabelKeys: []string{}, LabelValues: []string{},
	}
	for i, r := range runs {
		p.Ids[i], p.JobNames[i], p.Inputs[i] = r.ID, r.JobName, string(r.Input)
		p.IdempotencyKeys[i], p.ConcurrencyKeys[i] = r.IdempotencyKey, r.ConcurrencyKey
		p.Labels[i], p.CreatedAts[i] = store.EncodeLabels(r.Labels), store.FormatTime(r.CreatedAt)
		for _, k := range store.SortedKeys(r.Labels) {
			p.LabelRunIds = append(p.LabelRunIds, r.ID)
			p.LabelKeys = append(p.LabelKeys, k)
			p.LabelValues = append(p.LabelValues, r.Labels[k])
		}
	}
	ids, err := e.q.InsertRuns(ctx, p)
	if err != nil {
		return nil, fmt.Errorf("pgstore: insert runs: %w", err)
	}
	inserted := make([]bool, len(runs))
	for i, r := range runs {
		inserted[i] = slices.Contains(ids, r.ID)
	}
	return inserted, nil
}

func (e enqueueOps) ByIdempotencyKey(ctx context.Context, job, key string) (*store.Run, error) {
	return optionalRun(e.q.GetRunByIdempotencyKey(ctx, pgdb.GetRunByIdempotencyKeyParams{JobName: job, IdempotencyKey: text(key)}))
}

func (e enqueueOps) PendingByConcurrencyKey(ctx context.Context, job, key string) (*store.Run, error) {
	return optionalRun(e.q.GetPendingRunByConcurrencyKey(ctx, pgdb.GetPendingRunByConcurrencyKeyParams{JobName: job, ConcurrencyKey: text(key)}))
}

func applyLogs(ctx context.Context, q *pgdb.Queries, ops []*op) error {
	if len(ops) == 0 {
		return nil
	}
	var p pgdb.InsertLogsParams
	for _, o := range ops {
		for _, l := range o.logs {
			p.Ids = append(p.Ids, l.ID)
			p.RunIds = append(p.RunIds, l.RunID)
			p.StepNames = append(p.StepNames, l.StepName)
			p.Levels = append(p.Levels, l.Level)
			p.Messages = append(p.Messages, l.Message)
			p.Datas = append(p.Datas, string(l.Data))
			p.CreatedAts = append(p.CreatedAts, store.FormatTime(l.CreatedAt))
		}
	}
	if err := q.InsertLogs(ctx, p); err != nil {
		return fmt.Errorf("pgstore: insert logs: %w", err)
	}
	return nil
}

// applyProgress writes the latest progress of each run: an UPDATE … FROM
// with two source rows for one target row would apply only one of them,
// unpredictably.
func applyProgress(ctx context.Context, q *pgdb.Queries, ops []*op) error {
	if len(ops) == 0 {
		return nil
	}
	latest := map[string]int{}
	for i, o := range ops {
		latest[o.lease.RunID] = i
	}
	var p pgdb.SetProgressParams
	var now time.Time
	for i, o := range ops {
		if latest[o.lease.RunID] != i {
			continue
		}
		p.Ids = append(p.Ids, o.lease.RunID)
		p.Generations = append(p.Generations, o.lease.Generation)
		p.Progresses = append(p.Progresses, o.progress)
		if o.now.After(now) {
			now = o.now
		}
	}
	p.Now = store.FormatTime(now)
	ids, err := q.SetProgress(ctx, p)
	if err != nil {
		return fmt.Errorf("pgstore: set progress: %w", err)
	}
	for _, o := range ops {
		o.ok = slices.Contains(ids, o.lease.RunID)
	}
	return nil
}

func applySteps(ctx context.Context, q *pgdb.Queries, ops []*op) error {
	if len(ops) == 0 {
		return nil
	}
	var p pgdb.SaveStepsParams
	for _, o := range ops {
		st := o.step
		p.Ids = append(p.Ids, st.ID)
		p.RunIds = append(p.RunIds, o.lease.RunID)
		p.Generations = append(p.Generations, o.lease.Generation)
		p.Names = append(p.Names, st.Name)
		p.StepIndexes = append(p.StepIndexes, int64(st.Index))
		p.Statuses = append(p.Statuses, string(st.Status))
		p.Outputs = append(p.Outputs, string(st.Output))
		p.Errors = append(p.Errors, st.Error)
		p.StartedAts = append(p.StartedAts, store.FormatTime(st.StartedAt))
		p.CompletedAts = append(p.CompletedAts, store.FormatTime(st.CompletedAt))
	}
	ids, err := q.SaveSteps(ctx, p)
	if err != nil {
		return fmt.Errorf("pgstore: save steps: %w", err)
	}
	for _, o := range ops {
		o.ok = slices.Contains(ids, o.step.ID)
	}
	return nil
}

func applyRenewals(ctx context.Context, q *pgdb.Queries, ops []*op) error {
	if len(ops) == 0 {
		return nil
	}
	var p pgdb.RenewLeasesParams
	var now time.Time
	for _, o := range ops {
		p.Ids = append(p.Ids, o.lease.RunID)
		p.Generations = append(p.Generations, o.lease.Generation)
		p.LeaseExpiresAts = append(p.LeaseExpiresAts, store.FormatTime(o.expiresAt))
		if now.IsZero() || o.now.Before(now) {
			now = o.now
		}
	}
	p.Now = store.FormatTime(now)
	ids, err := q.RenewLeases(ctx, p)
	if err != nil {
		return fmt.Errorf("pgstore: renew leases: %w", err)
	}
	for _, o := range ops {
		o.ok = slices.Contains(ids, o.lease.RunID)
	}
	return nil
}

func applyFinishes(ctx context.Context, q *pgdb.Queries, ops []*op) error {
	if len(ops) == 0 {
		return nil
	}
	var p pgdb.FinishRunsParams
	var now time.Time
	for _, o := range ops {
		p.Ids = append(p.Ids, o.lease.RunID)
		p.Generations = append(p.Generations, o.lease.Generation)
		p.Statuses = append(p.Statuses, string(o.fin.Status))
		p.Outputs = append(p.Outputs, string(o.fin.Output))
		p.Errors = append(p.Errors, o.fin.Error)
		p.DeleteSteps = append(p.DeleteSteps, o.fin.DeleteSteps)
		if o.fin.Now.After(now) {
			now = o.fin.Now
		}
	}
	p.Now = store.FormatTime(now)
	ids, err := q.FinishRuns(ctx, p)
	if err != nil {
		return fmt.Errorf("pgstore: finish runs: %w", err)
	}
	for _, o := range ops {
		o.ok = slices.Contains(ids, o.lease.RunID)
	}
	return nil
}
