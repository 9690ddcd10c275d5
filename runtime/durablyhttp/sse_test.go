package durablyhttp_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/durablyhttp"
	"github.com/durably-go/durably/store"
)

func TestSubscribeRunH046H047H048H052(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		id := v.trigger(`{"jobName":"steps","input":{"count":2,"delayMs":0}}`, admin)
		s := v.open("/subscribe?runId="+id, admin)
		if ct := s.res.Header.Get("Content-Type"); ct != "text/event-stream" || s.res.Header.Get("Cache-Control") != "no-cache" {
			t.Fatalf("headers %v", s.res.Header)
		}
		if err := v.e.Start(); err != nil { // pending: no snapshot, live events follow
			t.Fatal(err)
		}
		var types []string
		var last map[string]any
		for data := s.next(); data != ""; data = s.next() {
			types = append(types, typeOf(data))
			last = nil
			_ = json.Unmarshal([]byte(data), &last)
			if last["timestamp"] == nil || last["sequence"] == nil || last["runId"] != id {
				t.Fatalf("live event lacks fields: %s", data)
			}
		}
		want := "run:leased step:start log:write step:complete run:progress step:start log:write step:complete run:progress run:complete"
		if strings.Join(types, " ") != want {
			t.Fatalf("events\n got %s\nwant %s", strings.Join(types, " "), want)
		}
		if last["output"].(map[string]any)["sum"] != float64(3) {
			t.Fatalf("run:complete %v", last)
		}
		// Snapshots of finished runs: one message, then the stream ends.
		s = v.open("/subscribe?runId="+id, admin)
		snap := s.next()
		if typeOf(snap) != "run:complete" || !strings.Contains(snap, `"duration":0`) || !strings.Contains(snap, `"sequence":0`) || s.next() != "" {
			t.Fatalf("snapshot %s", snap)
		}
		_ = v.e.Stop(context.Background())
		cancelled := v.trigger(`{"jobName":"echo","input":{"message":"x"},"concurrencyKey":"never"}`, admin)
		v.do("POST", "/cancel?runId="+cancelled, "", admin).want(t, 200, "")
		s = v.open("/subscribe?runId="+cancelled, admin)
		if got := typeOf(s.next()); got != "run:cancel" || s.next() != "" {
			t.Fatalf("cancelled snapshot %s", got)
		}
	})
}

func TestSubscribeLeasedSnapshotAndFraming(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open)
		if err := v.e.Start(); err != nil {
			t.Fatal(err)
		}
		id := v.trigger(`{"jobName":"slow","input":{"message":"x"}}`, admin)
		v.waitStatus(id, durably.StatusLeased)
		// Raw framing: only "data: <json>" lines and blank lines.
		conn, err := net.Dial("tcp", strings.TrimPrefix(v.srv.URL, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "GET /api/durably/subscribe?runId=%s HTTP/1.1\r\nHost: x\r\nX-User-Id: u1\r\nX-Org-Id: org-a\r\nX-Role: admin\r\n\r\n", id)
		r := bufio.NewReader(conn)
		res, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(res.Body)
		line, _ := br.ReadString('\n')
		blank, _ := br.ReadString('\n')
		if !strings.HasPrefix(line, `data: {"type":"run:leased"`) || blank != "\n" || !strings.Contains(line, `"sequence":0`) {
			t.Fatalf("first message %q %q", line, blank)
		}
		close(v.gate)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatalf("stream ended without run:complete: %v", err)
			}
			if line != "\n" && !strings.HasPrefix(line, "data: ") {
				t.Fatalf("unexpected line %q", line)
			}
			if strings.Contains(line, `"type":"run:complete"`) {
				break
			}
		}
	})
}

// projectionKeys is H-051's key order per type.
var projectionKeys = map[string]string{
	"run:trigger":   "type,runId,jobName,labels",
	"run:leased":    "type,runId,jobName,labels",
	"run:complete":  "type,runId,jobName,labels",
	"run:progress":  "type,runId,jobName,progress,labels",
	"step:start":    "type,runId,jobName,stepName,stepIndex,labels",
	"step:complete": "type,runId,jobName,stepName,stepIndex,labels",
	"log:write":     "type,runId,jobName,labels,stepName,level,message,data",
	"run:coalesced": "type,runId,jobName,labels,skippedInput,skippedLabels",
	"run:cancel":    "type,runId,jobName,labels",
	"run:delete":    "type,runId,jobName,labels",
}

func TestRunsSubscribeH050H051(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open, func(_ *durably.Config, o *durablyhttp.Options[user, testLabels]) { o.SSEThrottle = -1 })
		s := v.open("/runs/subscribe?jobName=steps&status=ignored&limit=bogus", admin)
		v.trigger(`{"jobName":"echo","input":{"message":"filtered out by job"}}`, admin)
		id := v.trigger(`{"jobName":"steps","input":{"count":1,"delayMs":0},"concurrencyKey":"k"}`, admin)
		v.trigger(`{"jobName":"steps","input":{"count":5,"delayMs":0},"concurrencyKey":"k","coalesce":"skip"}`, admin)
		if err := v.e.Start(); err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for len(seen) < 7 {
			data := s.next()
			typ := typeOf(data)
			if want, ok := projectionKeys[typ]; !ok || strings.Join(keysOf(t, data), ",") != want {
				t.Fatalf("projection %s: keys %v", data, keysOf(t, data))
			}
			if strings.Contains(data, "timestamp") || strings.Contains(data, "sequence") || strings.Contains(data, "filtered out") {
				t.Fatalf("projection %s", data)
			}
			if !strings.Contains(data, id) {
				t.Fatalf("another run's event: %s", data)
			}
			seen[typ] = true
		}
		// Cancel and delete reach the stream too; it never closes by itself.
		v.waitStatus(id, durably.StatusCompleted)
		v.do("DELETE", "/run?runId="+id, "", admin).want(t, 200, "")
		for typeOf(s.next()) != "run:delete" {
		}
	})
}

func TestProgressThrottleH053(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		const n = 200
		v := newEnv(t, open, func(_ *durably.Config, o *durablyhttp.Options[user, testLabels]) {
			o.SSEThrottle = 50 * time.Millisecond
		})
		durably.MustRegister(v.e, &durably.Job[int, int]{Name: "chatty", Run: func(ctx context.Context, s *durably.StepContext, in int) (int, error) {
			for i := 1; i <= n; i++ {
				s.Progress(i, n, "")
				if i%20 == 0 {
					time.Sleep(10 * time.Millisecond)
				}
			}
			return n, nil
		}})
		id := v.trigger(`{"jobName":"chatty","input":1}`, admin)
		s := v.open("/subscribe?runId="+id, admin)
		start := time.Now()
		if err := v.e.Start(); err != nil {
			t.Fatal(err)
		}
		var currents []int
		for data := s.next(); data != ""; data = s.next() {
			if typeOf(data) == "run:progress" {
				var m struct{ Progress struct{ Current int } }
				_ = json.Unmarshal([]byte(data), &m)
				currents = append(currents, m.Progress.Current)
			}
			if typeOf(data) == "run:complete" && (len(currents) == 0 || currents[len(currents)-1] != n) {
				t.Fatalf("the last progress was not flushed before run:complete: %v", currents)
			}
		}
		elapsed := time.Since(start)
		if len(currents) < 2 || currents[0] != 1 || currents[len(currents)-1] != n {
			t.Fatalf("first and last progress must be delivered: %v", currents)
		}
		if max := int(elapsed/(50*time.Millisecond)) + 3; len(currents) > max {
			t.Fatalf("%d progress messages in %v with a 50ms throttle (at most %d)", len(currents), elapsed, max)
		}
	})
}

func TestHeartbeatAndClose(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open, func(_ *durably.Config, o *durablyhttp.Options[user, testLabels]) { o.Heartbeat = 20 * time.Millisecond })
		s := v.open("/runs/subscribe", admin)
		deadline := time.After(10 * time.Second)
		for pings := 0; pings < 2; {
			select {
			case line := <-s.lines:
				if line == ": ping" {
					pings++
				}
			case <-deadline:
				t.Fatal("no heartbeats")
			}
		}
		done := make(chan struct{})
		go func() { v.h.Close(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Close did not end the open stream")
		}
		for range s.lines { // the stream ends
		}
	})
}

// TestSlowConsumers: clients that never read neither block the worker nor
// make the server hold unbounded memory (their streams end).
func TestSlowConsumers(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open, func(c *durably.Config, o *durablyhttp.Options[user, testLabels]) { o.StreamBuffer = 16 })
		var conns []net.Conn
		for range 20 {
			conn, err := net.Dial("tcp", strings.TrimPrefix(v.srv.URL, "http://"))
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, conn)
			fmt.Fprintf(conn, "GET /api/durably/runs/subscribe HTTP/1.1\r\nHost: x\r\nX-User-Id: u1\r\nX-Org-Id: org-a\r\nX-Role: admin\r\n\r\n")
		}
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		if err := v.e.Start(); err != nil {
			t.Fatal(err)
		}
		var ids []string
		for range 30 {
			ids = append(ids, v.trigger(`{"jobName":"steps","input":{"count":20,"delayMs":0}}`, admin))
		}
		for _, id := range ids {
			v.waitStatus(id, durably.StatusCompleted)
		}
	})
}

// Many list streams with different and equal filters share one fan-out:
// each stream gets exactly the events its (scoped) filter selects, and a
// run's events in their order (H-050).
func TestRunsSubscribeFanOut(t *testing.T) {
	forEachStore(t, func(t *testing.T, open func() store.Store) {
		v := newEnv(t, open, func(_ *durably.Config, o *durablyhttp.Options[user, testLabels]) { o.SSEThrottle = -1 })
		type sub struct {
			name string
			s    *stream
			want map[string]bool // run ids
		}
		subs := []*sub{
			{name: "org-a echo", s: v.open("/runs/subscribe?jobName=echo", admin)},
			{name: "org-a echo again", s: v.open("/runs/subscribe?jobName=echo", admin)},
			{name: "org-a steps", s: v.open("/runs/subscribe?jobName=steps", admin)},
			{name: "org-b all", s: v.open("/runs/subscribe", other)},
		}
		for _, s := range subs {
			s.want = map[string]bool{}
		}
		if err := v.e.Start(); err != nil {
			t.Fatal(err)
		}
		for i := range 10 {
			a := v.trigger(fmt.Sprintf(`{"jobName":"echo","input":{"message":"a%d"}}`, i), admin)
			subs[0].want[a], subs[1].want[a] = true, true
			subs[2].want[v.trigger(`{"jobName":"steps","input":{"count":1,"delayMs":0}}`, admin)] = true
			subs[3].want[v.trigger(fmt.Sprintf(`{"jobName":"echo","input":{"message":"b%d"}}`, i), other)] = true
		}
		for _, s := range subs {
			triggered := map[string]bool{}
			for completed := 0; completed < len(s.want); {
				data := s.s.next()
				var m struct{ Type, RunID string }
				if err := json.Unmarshal([]byte(data), &m); err != nil {
					t.Fatalf("%s: %q: %v", s.name, data, err)
				}
				if !s.want[m.RunID] {
					t.Fatalf("%s: event of a run outside its filter: %s", s.name, data)
				}
				switch m.Type {
				case "run:trigger":
					triggered[m.RunID] = true
				case "run:complete":
					if !triggered[m.RunID] {
						t.Fatalf("%s: run:complete before run:trigger for %s", s.name, m.RunID)
					}
					completed++
				}
			}
		}
	})
}
