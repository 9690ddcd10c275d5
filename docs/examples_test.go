// Package docs_test holds the Go code that README.md and the guides of
// docs/ show: each Go block of those files is an excerpt of a compiled
// file of the repository (TestDocGoBlocks in the module root checks it),
// and the blocks that no program of the repository runs are here, where
// go vet and go test compile them.
package docs_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/examples/tenants/tenantjobs"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/durablyotel"
	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/store"
)

// The examples are compiled, not run (but for the testing guide's test):
// they need a network, servers and files the suite does not give them.
var _ = []any{tour, schedules, delayed, priorities, retries, sleeps, serve, observe, hooks, limits, wait, postgres,
	fanOut, approvals, approve, triggerTx, generatedTriggerTx, resume}

// ---- docs/jobs.md ----

type In struct {
	URL string `json:"url"`
}
type Out struct {
	Bytes int `json:"bytes"`
}

var fetch = &durably.Job[In, Out]{
	Name: "fetch",
	Run: func(ctx context.Context, s *durably.StepContext, in In) (Out, error) {
		body, err := durably.RunStep(s, "download", func(ctx context.Context) ([]byte, error) {
			return download(ctx, in.URL) // ctx ends on cancel, lease loss, shutdown
		})
		if err != nil {
			return Out{}, err
		}
		s.Progress(1, 2, "downloaded")
		s.Logger().Info("downloaded", "bytes", len(body)) // stored with the run
		n, err := durably.RunStep(s, "store", func(ctx context.Context) (int, error) {
			return save(ctx, body)
		})
		return Out{Bytes: n}, err
	},
}

func tour(ctx context.Context, u, host, org string) {
	st, _ := sqlitestore.Open("app.db", sqlitestore.Options{})
	eng, _ := durably.New(durably.Config{Store: st, MaxConcurrentRuns: 8})
	job, _ := durably.Register(eng, fetch)
	_ = eng.Init(ctx)   // migrate + start the worker
	defer eng.Stop(ctx) // waits for runs in flight; on ctx's end hands leases back

	res, _ := job.Trigger(ctx, In{URL: u},
		durably.WithIdempotencyKey("fetch:"+u),   // same key, same run, forever
		durably.WithConcurrencyKey("host:"+host), // one pending + one running per key
		durably.WithLabels(map[string]string{"organizationId": org}))
	out, err := job.TriggerAndWait(ctx, In{URL: u}, durably.WithTimeout(time.Minute))
	run, _ := job.GetRun(ctx, res.Run.ID) // typed input and output
	runs, _ := eng.ListRuns(ctx, durably.RunFilter{Labels: map[string]string{"organizationId": org}, Limit: 20})
	fmt.Println(out, err, run, runs)
}

func schedules(eng *durably.Engine, job *durably.JobHandle[In, Out]) error {
	err := durably.AddSchedule(job, durably.Schedule[In]{
		Name:     "nightly-fetch", // unique per engine; part of each tick's key
		Cron:     "0 3 * * *",     // five fields, or @daily, @hourly, "@every 15m" ...
		TimeZone: "Europe/Paris",  // IANA zone; default UTC
		Input:    In{URL: "https://example.com/feed"},
		Labels:   map[string]string{"organizationId": "acme"},
	})
	for _, s := range eng.Schedules() {
		fmt.Println(s.Name, s.Next) // next tick, last fired
	}
	return err
}

func delayed(ctx context.Context, job *durably.JobHandle[In, Out], in In) {
	res, _ := job.Trigger(ctx, in, durably.WithDelay(10*time.Minute))
	fmt.Println(res.Run.Status, res.Run.RunAt) // pending, ten minutes after the trigger
	res, _ = job.Trigger(ctx, in, durably.WithRunAt(time.Date(2026, 4, 1, 9, 0, 0, 0, time.UTC)))
	fmt.Println(res.Run.Status, res.Run.RunAt) // pending 2026-04-01 09:00:00 +0000 UTC
}

func priorities(ctx context.Context, eng *durably.Engine, in In) error {
	export := durably.MustRegister(eng, &durably.Job[In, Out]{Name: "export", Priority: 10, MaxRunning: 2, Run: fetch.Run})
	_, err := export.Trigger(ctx, in, durably.WithPriority(0)) // before the job's other runs
	return err
}

func retries(eng *durably.Engine) *durably.JobHandle[In, Out] {
	job := durably.MustRegister(eng, &durably.Job[In, Out]{
		Name:  "fetch",
		Retry: &durably.RetryPolicy{MaxAttempts: 5, Backoff: durably.BackoffExponential, Initial: time.Second, Max: time.Minute, Jitter: 0.2},
		Run: func(ctx context.Context, s *durably.StepContext, in In) (Out, error) {
			body, err := durably.RunStep(s, "get", func(ctx context.Context) ([]byte, error) {
				resp, err := http.Get(in.URL)
				if resp != nil && resp.StatusCode == http.StatusNotFound {
					return nil, durably.Permanent(err) // retrying will not help
				}
				return readBody(resp, err)
			})
			if err != nil {
				return Out{}, err // also an ErrSuspended error while a retry waits: return it
			}
			// A step's own policy replaces the job's; MaxAttempts 1 turns retries off.
			_, err = durably.RunStep(s, "notify", notify, durably.WithStepRetry(durably.RetryPolicy{MaxAttempts: 1}))
			return Out{Bytes: len(body)}, err
		},
	})
	return job
}

func sleeps(s *durably.StepContext, nineOClock time.Time) (Out, error) {
	if err := durably.Sleep(s, "cool-down", 24*time.Hour); err != nil {
		return Out{}, err // ErrSuspended: the run sleeps without a slot or a lease
	}
	err := durably.SleepUntil(s, "at-nine", nineOClock) // same, until a time
	return Out{}, err
}

func download(ctx context.Context, url string) ([]byte, error) { return []byte(url), ctx.Err() }
func save(ctx context.Context, b []byte) (int, error)          { return len(b), ctx.Err() }
func readBody(resp *http.Response, err error) ([]byte, error)  { return nil, err }
func notify(ctx context.Context) (bool, error)                 { return true, ctx.Err() }

// ---- README.md, docs/http.md, docs/dashboard.md, docs/observability.md ----

func serve(eng *durably.Engine, mux *http.ServeMux, auth durablyhttp.AuthConfig[tenantjobs.AuthContext, tenantjobs.Labels]) error {
	h, err := durablyhttp.New(eng, durablyhttp.Options[tenantjobs.AuthContext, tenantjobs.Labels]{
		Jobs: tenantjobs.JobSchemas(), // GET /jobs
		Auth: &auth,                   // Authenticate, OnTrigger, OnRunAccess, ScopeRuns
	})
	if err != nil {
		return err
	}
	mux.Handle("/api/durably/", http.StripPrefix("/api/durably", h))
	mux.Handle("/dashboard/", http.StripPrefix("/dashboard", h.Dashboard(durablyhttp.DashboardOptions{Title: "acme jobs"})))
	return nil
}

func observe(ctx context.Context, st store.Store) error {
	obs, err := durablyotel.New(durablyotel.Options{}) // otel.GetTracerProvider(), otel.GetMeterProvider()
	if err != nil {
		return err
	}
	eng, err := durably.New(durably.Config{
		Store:    st,
		Observer: obs,
		// Optional: log lines about a run carry its trace_id and span_id.
		Logger: slog.New(durablyotel.LogHandler(slog.NewJSONHandler(os.Stderr, nil))),
	})
	if err != nil {
		return err
	}
	return eng.Init(ctx)
}

// User is an application's authentication context.
type User struct {
	ID, Org string
}

func hooks(ctx context.Context, eng *durably.Engine, mux *http.ServeMux, srv *http.Server) error {
	h, err := durablyhttp.New(eng, durablyhttp.Options[User, durably.MapLabels]{
		Auth: &durablyhttp.AuthConfig[User, durably.MapLabels]{
			Authenticate: func(r *http.Request) (User, error) {
				return userOf(r) // or durablyhttp.Reject(401, "Unauthorized")
			},
			OnTrigger: func(ctx context.Context, u User, req *durablyhttp.TriggerRequest[durably.MapLabels]) error {
				req.Labels = &durably.MapLabels{"organizationId": u.Org} // stamped server-side (D8)
				return nil
			},
			OnRunAccess: func(ctx context.Context, u User, run *durablyhttp.Run[durably.MapLabels], op durablyhttp.Operation) error {
				if run.Labels["organizationId"] != u.Org {
					return durablyhttp.Reject(http.StatusForbidden, "Forbidden")
				}
				return nil
			},
			ScopeRuns: func(ctx context.Context, u User, f durablyhttp.RunsFilter[durably.MapLabels]) (durablyhttp.RunsFilter[durably.MapLabels], error) {
				f.Labels = durably.MapLabels{"organizationId": u.Org} // lists and counts see one tenant
				return f, nil
			},
		},
	})
	if err != nil {
		return err
	}
	mux.Handle("/api/durably/", http.StripPrefix("/api/durably", h)) // net/http; with chi: r.Mount("/api/durably", h)
	srv.RegisterOnShutdown(h.Close)                                  // end event streams on shutdown
	// When shutting down: the streams the handler took over from
	// net/http are not the server's to wait for, so wait for them too.
	return errors.Join(srv.Shutdown(ctx), h.Shutdown(ctx))
}

func limits(eng *durably.Engine, mux *http.ServeMux, auth *durablyhttp.AuthConfig[User, durably.MapLabels]) error {
	h, err := durablyhttp.New(eng, durablyhttp.Options[User, durably.MapLabels]{
		Auth:                   auth,
		MaxStreams:             5000, // event streams open at once; past it 429
		MaxStreamsPerPrincipal: 32,   // per user; past it 429
		StreamPrincipal:        func(r *http.Request, u User) string { return u.ID },
		StreamWriteTimeout:     30 * time.Second, // per write: a client that stopped reading is dropped
	})
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      30 * time.Second, // event streams replace it with StreamWriteTimeout per write
		IdleTimeout:       60 * time.Second, // without it keep-alive connections stay forever
	}
	srv.RegisterOnShutdown(h.Close)
	return srv.ListenAndServe()
}

func userOf(r *http.Request) (User, error) {
	return User{ID: r.Header.Get("X-User-Id"), Org: r.Header.Get("X-Org-Id")}, nil
}

// ---- docs/declaration.md ----

func wait(ctx context.Context, jobs *tenantjobs.Jobs, in tenantjobs.StepsInput, labels tenantjobs.TriggerLabels) error {
	run, _, err := jobs.Steps.Trigger(ctx, in, labels, tenantjobs.TriggerOptions{})
	if err != nil {
		return err
	}
	out, run, err := jobs.Steps.Wait(ctx, run.ID, durably.WithTimeout(time.Minute))
	// out is a StepsOutput; run a *StepsRun; a failed run is durably.ErrRunFailed,
	// a cancelled one durably.ErrCancelled, a run of another job durably.ErrNotFound
	fmt.Println(out.Sum, run.Labels.OrganizationID)
	return err
}

// ---- docs/operations.md ----

func postgres(ctx context.Context) (*pgstore.Store, error) {
	st, err := pgstore.Open(ctx, "postgres://user:pass@db:5432/app", pgstore.Options{})
	// or, with a pool you own: pgstore.New(ctx, pool, pgstore.Options{})
	return st, err
}

// ---- docs/composition.md ----

type ResizeInput struct {
	Width int `json:"width"`
}
type ResizeOutput struct {
	Bytes int `json:"bytes"`
}

func fanOut(s *durably.StepContext, resize *durably.JobHandle[ResizeInput, ResizeOutput]) (Out, error) {
	kids, err := resize.StartChildren(s, "resize", []durably.BatchItem[ResizeInput]{
		{Input: ResizeInput{Width: 320}},
		{Input: ResizeInput{Width: 1280}},
	})
	if err != nil {
		return Out{}, err
	}
	outs, err := durably.AwaitChildren(s, "resized", kids, durably.WithTimeout(10*time.Minute))
	if err != nil {
		return Out{}, err // ErrSuspended while it waits: return it; ErrTimeout after the timeout
	}
	var total Out
	for _, o := range outs {
		if o.Err != nil { // a *durably.ChildError: the child failed or was cancelled
			return Out{}, o.Err
		}
		total.Bytes += o.Output.Bytes // a ResizeOutput
	}
	return total, nil
}

type Expense struct {
	Amount int `json:"amount"`
}
type Approval struct {
	By string `json:"by"`
}
type Decision struct {
	Approved bool   `json:"approved"`
	By       string `json:"by,omitempty"`
	Reason   string `json:"reason,omitempty"`
}

var Approve = durably.Signal[Approval]{Name: "approve"}

func approvals(eng *durably.Engine) *durably.JobHandle[Expense, Decision] {
	expense := durably.MustRegister(eng, &durably.Job[Expense, Decision]{
		Name:    "expense",
		Signals: []durably.SignalDecl{Approve},
		Run: func(ctx context.Context, s *durably.StepContext, in Expense) (Decision, error) {
			a, err := durably.WaitForSignal(s, "approval", Approve, durably.WithTimeout(72*time.Hour))
			if errors.Is(err, durably.ErrTimeout) {
				return Decision{Approved: false, Reason: "no answer"}, nil
			}
			if err != nil {
				return Decision{}, err // ErrSuspended while it waits: return it
			}
			return Decision{Approved: true, By: a.By}, nil
		},
	})
	return expense
}

func approve(ctx context.Context, eng *durably.Engine, runID string) error {
	err := durably.SendSignal(ctx, eng, runID, Approve, Approval{By: "rita"})
	if err != nil {
		return err
	}
	// or, untyped, as the HTTP handler does:
	err = eng.Signal(ctx, runID, "approve", json.RawMessage(`{"by":"rita"}`))
	return err
}

// ---- docs/transactions.md ----

type Receipt struct {
	OrderID string `json:"orderId"`
}

func triggerTx(ctx context.Context, pool *pgxpool.Pool, sendReceipt *durably.JobHandle[Receipt, Out], id string, total int) error {
	// PostgreSQL: any pgx.Tx on the store's database and schema.
	tx, err := pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `INSERT INTO orders (id, total) VALUES ($1, $2)`, id, total); err != nil {
		return err
	}
	res, err := sendReceipt.TriggerTx(ctx, pgstore.Tx(tx), Receipt{OrderID: id})
	if err != nil {
		return err
	}
	fmt.Println(res.Run.ID)
	return tx.Commit(ctx) // the order and its run, or neither
}

func generatedTriggerTx(ctx context.Context, tx pgx.Tx, jobs *tenantjobs.Jobs, in tenantjobs.StepsInput, labels tenantjobs.TriggerLabels) error {
	run, disposition, err := jobs.Steps.TriggerTx(ctx, pgstore.Tx(tx), in, labels, tenantjobs.TriggerOptions{})
	fmt.Println(run, disposition)
	return err
}

func resume(ctx context.Context, eng *durably.Engine, runID string) error {
	run, err := eng.Resume(ctx, runID) // the same run, pending again
	fmt.Println(run)
	return err
}
