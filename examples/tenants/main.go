// Command tenants serves the tenants fixture (docs/contract.md, "The tenants fixture"):
// four jobs behind header authentication and multi-tenant hooks, on the
// embedded SQLite store or on PostgreSQL.
//
//	go run ./examples/tenants -addr 127.0.0.1:8787 -db tenants.db
//	go run ./examples/tenants -db postgres://postgres@127.0.0.1:5432/test
//	go run ./examples/tenants -otel-stdout   # spans on stdout, logs with trace ids
//
// Its jobs, labels and auth context are declared in durably.yaml and
// generated into ./tenantjobs (go generate ./examples/tenants).
package main

//go:generate go run github.com/durably-go/durably/cmd/durably-gen -q -config durably.yaml

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/examples/tenants/tenantjobs"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/runtime/pgstore"
	"github.com/durably-go/durably/runtime/sqlitestore"
	"github.com/durably-go/durably/store"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8787", "listen address")
	db := flag.String("db", "", `storage: empty, a path or "file:" for SQLite (default tenants.db); postgres:// for PostgreSQL`)
	grace := flag.Duration("shutdown-timeout", 10*time.Second, "on SIGTERM, how long runs in flight may take before their leases are handed back")
	preserve := flag.Bool("preserve-steps", false, "keep the steps and logs of finished runs (durably.Config.PreserveSteps), for the dashboard")
	lim := defaultLimits(fdLimit())
	flag.IntVar(&lim.MaxConns, "max-conns", lim.MaxConns, "open connections; at it the longest-idle one is closed (default from the open-files limit; 0: no limit)")
	flag.IntVar(&lim.MaxStreams, "max-streams", lim.MaxStreams, "event streams open at once (0: no limit)")
	flag.IntVar(&lim.MaxStreamsPerPrincipal, "max-streams-per-user", lim.MaxStreamsPerPrincipal, "event streams one user may have open (0: no limit)")
	otelStdout := flag.Bool("otel-stdout", false, "trace requests, triggers, runs and steps with OpenTelemetry, spans written to stdout as JSON")
	flag.Parse()
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	tel := &telemetry{}
	if *otelStdout {
		var err error
		if tel, err = newTelemetry(os.Stdout); err != nil {
			logger.Error("tenants", "err", err)
			os.Exit(1)
		}
	}
	if err := run(*addr, *db, *grace, *preserve, lim, tel, tel.logger(logger)); err != nil {
		logger.Error("tenants", "err", err)
		os.Exit(1)
	}
}

func openStore(ctx context.Context, db string, logger *slog.Logger) (store.Store, error) {
	if strings.HasPrefix(db, "postgres://") || strings.HasPrefix(db, "postgresql://") {
		return pgstore.Open(ctx, db, pgstore.Options{Logger: logger})
	}
	if db == "" {
		db = "tenants.db"
	}
	return sqlitestore.Open(db, sqlitestore.Options{Logger: logger})
}

func run(addr, db string, grace time.Duration, preserveSteps bool, lim serverLimits, tel *telemetry, logger *slog.Logger) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	st, err := openStore(ctx, db, logger)
	if err != nil {
		return err
	}
	defer st.Close()
	eng, err := durably.New(tenantjobs.Config(durably.Config{
		Store:              st,
		PollingInterval:    50 * time.Millisecond,
		MaxConcurrentRuns:  4,
		LeaseDuration:      30 * time.Second,
		LeaseRenewInterval: 5 * time.Second,
		PreserveSteps:      preserveSteps,
		Logger:             logger,
		Observer:           tel.observer,
	}))
	if err != nil {
		return err
	}
	if _, err := register(eng); err != nil {
		return err
	}
	hopts := durablyhttp.Options[tenantjobs.AuthContext, tenantjobs.Labels]{
		Jobs:        tenantjobs.JobSchemas(),
		Auth:        &auth,
		SSEThrottle: 100 * time.Millisecond,
		Logger:      logger,
	}
	handlerLimits(&hopts, lim)
	h, err := durablyhttp.New(eng, hopts)
	if err != nil {
		return err
	}

	var ready atomic.Bool
	mux := http.NewServeMux()
	mux.Handle("/api/durably/", tel.traced(http.StripPrefix("/api/durably", h)))
	// The dashboard: its pages read and act through the same hooks.
	mux.Handle("/dashboard/", http.StripPrefix("/dashboard", h.Dashboard(durablyhttp.DashboardOptions{Title: "tenants"})))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if !ready.Load() {
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv, conns := newHTTPServer(mux, lim, logger)
	srv.RegisterOnShutdown(h.Close) // end event streams, which never go idle
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(conns.Listener(ln)) }()

	if err := eng.Init(ctx); err != nil {
		return err
	}
	ready.Store(true)
	logger.Info("tenants: serving", "addr", ln.Addr().String(), "db", redactDSN(db),
		"maxConns", lim.MaxConns, "maxStreams", lim.MaxStreams, "maxStreamsPerUser", lim.MaxStreamsPerPrincipal)

	select {
	case err := <-serveErr:
		return err
	case <-ctx.Done():
	}
	// Stop accepting requests, then let runs in flight finish; past the
	// deadline their steps are cancelled and their leases handed back.
	logger.Info("tenants: shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	// The event streams the handler took over from net/http, which the
	// server's Shutdown no longer sees.
	if err := h.Shutdown(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	if err := eng.Stop(shutdownCtx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		return err
	}
	return tel.shutdown(shutdownCtx)
}

// auth is the fixture's demo authentication: headers, never for production.
var auth = durablyhttp.AuthConfig[tenantjobs.AuthContext, tenantjobs.Labels]{
	Authenticate: func(r *http.Request) (tenantjobs.AuthContext, error) {
		c := tenantjobs.AuthContext{UserID: r.Header.Get("X-User-Id"), OrgID: r.Header.Get("X-Org-Id")}
		if err := c.Role.UnmarshalText([]byte(r.Header.Get("X-Role"))); err != nil || c.UserID == "" || c.OrgID == "" {
			return c, durablyhttp.Reject(http.StatusUnauthorized, "Unauthorized")
		}
		return c, nil
	},
	OnTrigger: func(ctx context.Context, c tenantjobs.AuthContext, req *durablyhttp.TriggerRequest[tenantjobs.Labels]) error {
		if c.Role == tenantjobs.RoleViewer {
			return forbidden
		}
		if req.Labels == nil {
			// The React client sends no labels: stamp them here (D8).
			req.Labels = &tenantjobs.Labels{OrganizationID: c.OrgID, Env: tenantjobs.EnvProduction}
		}
		if req.Labels.OrganizationID != c.OrgID {
			return forbidden
		}
		// Who may jump the queue is the server's decision, not the
		// client's: priority is strict across tenants, so a member's
		// urgent runs would push every other organization's runs back.
		if req.Priority != nil && c.Role != tenantjobs.RoleAdmin {
			return durablyhttp.Reject(http.StatusForbidden, "Only an admin may set a priority")
		}
		return nil // the labels schema is checked after this hook
	},
	OnRunAccess: func(ctx context.Context, c tenantjobs.AuthContext, run *durablyhttp.Run[tenantjobs.Labels], op durablyhttp.Operation) error {
		if run.Labels.OrganizationID != c.OrgID {
			return forbidden
		}
		if c.Role == tenantjobs.RoleViewer && (op == durablyhttp.OpRetrigger || op == durablyhttp.OpResume || op == durablyhttp.OpCancel || op == durablyhttp.OpDelete) {
			return forbidden
		}
		return nil
	},
	ScopeRuns: func(ctx context.Context, c tenantjobs.AuthContext, f durablyhttp.RunsFilter[tenantjobs.Labels]) (durablyhttp.RunsFilter[tenantjobs.Labels], error) {
		f.Labels.OrganizationID = c.OrgID
		return f, nil
	},
}

var forbidden = durablyhttp.Reject(http.StatusForbidden, "Forbidden")

// register registers the fixture's jobs on eng: the handlers below, and
// review's, which starts runs of slow through the registered handle.
func register(eng *durably.Engine) (*tenantjobs.Jobs, error) {
	var jobs *tenantjobs.Jobs
	h := handlers
	h.Review = func(ctx context.Context, s *durably.StepContext, in tenantjobs.ReviewInput) (tenantjobs.ReviewOutput, error) {
		return review(s, jobs.Slow, in)
	}
	var err error
	jobs, err = tenantjobs.Register(eng, h)
	return jobs, err
}

// review starts its children, waits for them, then for the signal approve.
func review(s *durably.StepContext, slow *tenantjobs.SlowJob, in tenantjobs.ReviewInput) (tenantjobs.ReviewOutput, error) {
	items := make([]durably.BatchItem[tenantjobs.SlowInput], in.Count)
	for i := range items {
		items[i].Input = tenantjobs.SlowInput{Ms: in.Ms}
	}
	kids, err := slow.StartChildren(s, "spawn", items)
	if err != nil {
		return tenantjobs.ReviewOutput{}, err
	}
	outs, err := durably.AwaitChildren(s, "children", kids)
	if err != nil {
		return tenantjobs.ReviewOutput{}, err
	}
	done := 0
	for _, o := range outs {
		if o.Err == nil {
			done++
		}
	}
	ok, err := tenantjobs.WaitForReviewApprove(s, "approval")
	if err != nil {
		return tenantjobs.ReviewOutput{}, err
	}
	return tenantjobs.ReviewOutput{ApprovedBy: ok.By, Children: done}, nil
}

// handlers are the jobs of the fixture but review (register).
var handlers = tenantjobs.Handlers{
	Echo: func(ctx context.Context, s *durably.StepContext, in tenantjobs.EchoInput) (tenantjobs.EchoOutput, error) {
		return durably.RunStep(s, "echo", func(ctx context.Context) (tenantjobs.EchoOutput, error) {
			return tenantjobs.EchoOutput(in), nil // the same fields: echo gives its input back
		})
	},
	Steps: func(ctx context.Context, s *durably.StepContext, in tenantjobs.StepsInput) (tenantjobs.StepsOutput, error) {
		sum := 0
		for i := 1; i <= in.Count; i++ {
			v, err := durably.RunStep(s, fmt.Sprintf("step-%d", i), func(ctx context.Context) (int, error) {
				if err := sleep(ctx, time.Duration(in.DelayMs)*time.Millisecond); err != nil {
					return 0, err
				}
				s.Logger().InfoContext(ctx, fmt.Sprintf("step %d", i))
				return i, nil
			})
			if err != nil {
				return tenantjobs.StepsOutput{}, err
			}
			s.Progress(i, in.Count, fmt.Sprintf("step %d", i))
			sum += v
		}
		return tenantjobs.StepsOutput{Sum: sum}, nil
	},
	Fail: func(ctx context.Context, s *durably.StepContext, in tenantjobs.FailInput) (tenantjobs.FailOutput, error) {
		for i := 1; ; i++ {
			_, err := durably.RunStep(s, fmt.Sprintf("step-%d", i), func(ctx context.Context) (int, error) {
				if i == in.FailAt {
					return 0, fmt.Errorf("boom at step %d", i)
				}
				return i, nil
			})
			if err != nil {
				return tenantjobs.FailOutput{}, err
			}
		}
	},
	Slow: func(ctx context.Context, s *durably.StepContext, in tenantjobs.SlowInput) (tenantjobs.SlowOutput, error) {
		return durably.RunStep(s, "wait", func(ctx context.Context) (tenantjobs.SlowOutput, error) {
			start := time.Now()
			err := sleep(ctx, time.Duration(in.Ms)*time.Millisecond)
			return tenantjobs.SlowOutput{Waited: int(time.Since(start).Milliseconds())}, err
		})
	},
	Flaky: flaky,
}

// flaky fails step "try" while the run's lease generation, which each
// attempt's claim advances, is at most in.Failures: so on the first
// Failures attempts of a run that no crash interrupted.
func flaky(ctx context.Context, s *durably.StepContext, in tenantjobs.FlakyInput) (tenantjobs.FlakyOutput, error) {
	attempt, err := durably.RunStep(s, "try", func(ctx context.Context) (int, error) {
		n := int(s.LeaseGeneration())
		s.Logger().InfoContext(ctx, fmt.Sprintf("attempt %d", n))
		if n <= in.Failures {
			return 0, fmt.Errorf("attempt %d failed", n)
		}
		return n, nil
	})
	if err != nil {
		return tenantjobs.FlakyOutput{}, err
	}
	if err := durably.Sleep(s, "nap", time.Duration(in.SleepMs)*time.Millisecond); err != nil {
		return tenantjobs.FlakyOutput{}, err
	}
	return tenantjobs.FlakyOutput{Attempts: attempt}, nil
}

// sleep waits d or until the run is cancelled.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return context.Cause(ctx)
	}
}
