package pgstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/durably-go/durably/internal/faultproxy"
	"github.com/durably-go/durably/internal/pgtest"
	"github.com/durably-go/durably/runtime/storetest"
	"github.com/durably-go/durably/store"
)

// proxied opens a migrated store whose connections go through a fault
// proxy.
func proxied(t *testing.T, opts Options) (*Store, *faultproxy.Proxy, string) {
	t.Helper()
	dsn := pgtest.Schema(t)
	u, err := url.Parse(dsn)
	if err != nil {
		t.Fatal(err)
	}
	proxy, err := faultproxy.Start(u.Host)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { proxy.Close() })
	u.Host = proxy.Addr()
	st, err := Open(context.Background(), u.String(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st, proxy, dsn
}

// warm fills the pool: a few reads at once, so that several connections
// are open (and go silent with the proxy).
func warm(t *testing.T, st *Store) {
	t.Helper()
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			if _, err := st.ListRuns(context.Background(), store.RunFilter{Limit: 1}); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
}

// timedCalls runs every call at once and returns each one's error and
// duration.
func timedCalls(calls []storetest.Call) (errs []error, took []time.Duration) {
	errs, took = make([]error, len(calls)), make([]time.Duration, len(calls))
	var wg sync.WaitGroup
	for i, c := range calls {
		wg.Go(func() {
			start := time.Now()
			errs[i] = c.Do()
			took[i] = time.Since(start)
		})
	}
	wg.Wait()
	return errs, took
}

// untilOK retries call until it succeeds or within runs out; it returns
// how long that took and the last error.
func untilOK(call storetest.Call, within time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		err := call.Do()
		if err == nil || time.Since(start) > within {
			return time.Since(start), err
		}
		if !errors.Is(err, store.ErrUnavailable) {
			return time.Since(start), err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSilentNetwork: every connection goes silent, open and new ones alike
// (a NAT that drops everything), with the default deadlines. Every kind of
// call fails as unavailable well before Options.Timeout, since the
// liveness check finds the server out of reach; once the network is back
// (the old connections stay silent for good) every call works again
// within moments, and Close returns at once whatever is silent.
func TestSilentNetwork(t *testing.T) {
	st, proxy, _ := proxied(t, Options{DisableListen: true})
	warm(t, st)
	ctx := context.Background()
	calls := storetest.OutageCalls(ctx, st, time.Now(), true)

	proxy.Silence()
	errs, took := timedCalls(calls)
	for i, c := range calls {
		if !errors.Is(errs[i], store.ErrUnavailable) {
			t.Errorf("%s while silent: %v, want ErrUnavailable", c.Name, errs[i])
		}
		t.Logf("%s failed after %v: %v", c.Name, took[i].Round(time.Millisecond), errs[i])
		if took[i] > DefaultTimeout-3*time.Second {
			t.Errorf("%s took %v to fail while silent, want it before Options.Timeout (%v) could end it: the liveness check", c.Name, took[i], DefaultTimeout)
		}
	}

	if err := proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	for _, c := range calls {
		d, err := untilOK(c, 10*time.Second)
		if err != nil {
			t.Errorf("%s after the network came back: %v (after %v)", c.Name, err, d)
		}
		t.Logf("%s works again %v after the network came back", c.Name, d.Round(time.Millisecond))
	}

	proxy.Silence()
	warmCtx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	_, _ = st.GetRun(warmCtx, "r1") // a call in flight on a silent connection
	cancel()
	start := time.Now()
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v while every connection is silent", d)
	}
}

// TestForgottenConnections: the open connections go silent for good while
// new ones work at once (a NAT or load balancer that forgot its flows, a
// failover behind a virtual IP). Every call works again within a few
// seconds, far under Options.Timeout: the liveness check abandons each
// silent connection once the server reports its session idle, and the
// pool drops the others.
func TestForgottenConnections(t *testing.T) {
	logs := &lockedBuffer{}
	st, proxy, _ := proxied(t, Options{DisableListen: true, Logger: slog.New(slog.NewTextHandler(logs, nil))})
	warm(t, st)
	calls := storetest.OutageCalls(context.Background(), st, time.Now(), true)

	proxy.Silence()
	if err := proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, c := range calls {
		wg.Go(func() {
			d, err := untilOK(c, 10*time.Second)
			if err != nil {
				t.Errorf("%s: %v (after %v)", c.Name, err, d)
			}
			t.Logf("%s works after %v", c.Name, d.Round(time.Millisecond))
			if d > 5*time.Second {
				t.Errorf("%s took %v to work again, want a few seconds", c.Name, d)
			}
		})
	}
	wg.Wait()
	if !strings.Contains(logs.String(), "session idle") {
		t.Errorf("no connection was abandoned as idle on the server; logs:\n%s", logs)
	}
}

// lockedBuffer is a log destination safe for concurrent writes.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestListenerNoticesSilence: the LISTEN connection, which carries other
// processes' triggers and events, goes silent for good while new
// connections work. It notices (a ping after listenQuiet without a
// notification goes unanswered) and reconnects, so that events published
// by another process arrive again within seconds instead of never.
func TestListenerNoticesSilence(t *testing.T) {
	a, proxy, dsn := proxied(t, Options{})
	ctx := context.Background()
	b, err := Open(ctx, dsn, Options{DisableListen: true}) // straight to the server
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := b.Migrate(ctx); err != nil { // starts its presence loop
		t.Fatal(err)
	}
	defer a.WatchRemote()()
	events := a.RemoteEvents()
	n := 0
	// received publishes events from b until a receives one.
	received := func(within time.Duration) (time.Duration, bool) {
		start := time.Now()
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for time.Since(start) < within {
			n++
			if err := b.PublishEvents([][]byte{fmt.Appendf(nil, `{"n":%d}`, n)}); err != nil {
				t.Fatal(err)
			}
			select {
			case <-events:
				return time.Since(start), true
			case <-tick.C:
			}
		}
		return within, false
	}
	if _, ok := received(15 * time.Second); !ok {
		t.Fatal("no event arrived before the fault")
	}
	for len(events) > 0 {
		<-events
	}
	proxy.Silence()
	if err := proxy.Restore(); err != nil {
		t.Fatal(err)
	}
	took, ok := received(30 * time.Second)
	if !ok {
		t.Fatal("no event arrived within 30s after the LISTEN connection went silent")
	}
	t.Logf("events arrive again %v after the LISTEN connection went silent", took.Round(time.Millisecond))
	if limit := listenQuiet + pingTimeout + 3*time.Second; took > limit {
		t.Errorf("events arrived again after %v, want within %v", took, limit)
	}
}

// TestOpenEndsAbandonedTransactions: the sessions of Open's pool have the
// server end a transaction left idle (a connection that went silent
// mid-transaction would otherwise hold its locks for hours), unless the
// DSN says otherwise.
func TestOpenEndsAbandonedTransactions(t *testing.T) {
	dsn := pgtest.Schema(t)
	ctx := context.Background()
	for _, c := range []struct{ dsn, want string }{
		{dsn, "1min"},
		{dsn + "&idle_in_transaction_session_timeout=5000", "5s"},
	} {
		st, err := Open(ctx, c.dsn, Options{DisableListen: true})
		if err != nil {
			t.Fatal(err)
		}
		var got string
		// Written by hand: a test's look at a session setting.
		err = st.Pool().QueryRow(ctx, "SHOW idle_in_transaction_session_timeout").Scan(&got)
		st.Close()
		if err != nil || got != c.want {
			t.Errorf("idle_in_transaction_session_timeout with %q: %q %v, want %q", c.dsn, got, err, c.want)
		}
	}
}
