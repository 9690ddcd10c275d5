package durablyclient_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyclient"
)

// TestWaitPollsOnThroughPassingFailures: Wait asks again at the next poll
// after a failure that may pass (503 during a database outage, 429, a
// gateway's 502, a connection closed under it) and returns the finished
// run; a failure that will not pass (500, 403) ends the wait at once.
func TestWaitPollsOnThroughPassingFailures(t *testing.T) {
	const closeConn = -1
	for _, c := range []struct {
		name    string
		failure int // the second read's answer
		passes  bool
	}{
		{"503 outage", http.StatusServiceUnavailable, true},
		{"429", http.StatusTooManyRequests, true},
		{"502 gateway", http.StatusBadGateway, true},
		{"connection closed", closeConn, true},
		{"500", http.StatusInternalServerError, false},
		{"403", http.StatusForbidden, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			var reads atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/run" {
					http.NotFound(w, r) // no event stream: Wait polls
					return
				}
				n := reads.Add(1)
				if n == 2 {
					if c.failure == closeConn {
						conn, _, _ := w.(http.Hijacker).Hijack()
						conn.Close()
						return
					}
					w.Header().Set("Content-Type", "application/json")
					w.WriteHeader(c.failure)
					w.Write([]byte(`{"error":"not now"}`))
					return
				}
				status := "leased"
				if n >= 3 {
					status = "completed"
				}
				w.Header().Set("Content-Type", "application/json")
				w.Write([]byte(`{"id":"r1","jobName":"j","input":{},"status":"` + status + `","currentStepIndex":0,"completedStepCount":0,"progress":null,"output":{"ok":true},"error":null,"labels":{},"startedAt":null,"completedAt":null,"createdAt":"2025-01-01T00:00:00.000Z","isTerminal":false,"isActive":true}`))
			}))
			defer srv.Close()
			client := durablyclient.New[durably.MapLabels](srv.URL, durablyclient.WithPollInterval(10*time.Millisecond))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			run, err := client.Wait(ctx, "r1")
			switch {
			case c.passes && err != nil:
				t.Fatalf("Wait ended on a failure that passes: %v", err)
			case c.passes && run.Status != durably.StatusCompleted:
				t.Fatalf("status %s, want completed", run.Status)
			case !c.passes && (err == nil || errors.Is(err, context.DeadlineExceeded)):
				t.Fatalf("Wait: %v; want the server's %d at once", err, c.failure)
			}
		})
	}
}

// TestRefusedStreamSaysTheServersError: a stream the server refuses gives
// the server's "error" as the message, as every other refused request
// does, not the raw JSON body.
func TestRefusedStreamSaysTheServersError(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusTooManyRequests)
		w.Write([]byte(`{"error":"Too many open streams"}`))
	}))
	defer srv.Close()
	client := durablyclient.New[durably.MapLabels](srv.URL)
	for _, err := range client.Subscribe(context.Background(), "r1") {
		var e *durablyclient.Error
		if !errors.As(err, &e) || e.Status != http.StatusTooManyRequests || e.Message != "Too many open streams" {
			t.Fatalf("refused stream: %#v, want 429 \"Too many open streams\"", err)
		}
		return
	}
	t.Fatal("the refused stream yielded nothing")
}
