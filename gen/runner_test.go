package gen

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/durably-go/durably"
	"github.com/durably-go/durably/runtime/sqlitestore"
)

// TestDurationPattern: the schema's pattern of retry durations accepts
// exactly the non-negative durations time.ParseDuration reads (the ones
// too long for a time.Duration aside, which check refuses).
func TestDurationPattern(t *testing.T) {
	re := regexp.MustCompile(goDuration)
	for _, s := range []string{"0", "0s", "1s", "500ms", "1m30s", "1.5h", ".5s", "1.s", "3us", "3µs", "3μs", "7ns", "2h45m0.5s",
		"", "-1s", "+1s", "1", "1 s", "s", ".s", "1d", "1S", "soon", "1s ", " 1s", "1e3s", "0x10s", "--1s", "1s-1s", "00", "-0"} {
		d, err := time.ParseDuration(s)
		parses := err == nil && d >= 0 && !strings.HasPrefix(s, "+") && !strings.HasPrefix(s, "-")
		if got := re.MatchString(s); got != parses {
			t.Errorf("%q: the pattern matches %v, time.ParseDuration reads a non-negative duration %v", s, got, parses)
		}
	}
}

// TestRetryChecksMirrorTheEngine: the generator accepts a declared retry
// policy exactly when the engine's Register accepts the policy the
// generated Register passes it, over every combination of valid and
// invalid members.
func TestRetryChecksMirrorTheEngine(t *testing.T) {
	st, err := sqlitestore.Open(filepath.Join(t.TempDir(), "s.db"), sqlitestore.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	e, err := durably.New(durably.Config{Store: st})
	if err != nil {
		t.Fatal(err)
	}
	run := func(ctx context.Context, s *durably.StepContext, in int) (int, error) { return in, nil }
	n, accepted := 0, 0
	for _, attempts := range []string{"", "0", "1", "4"} {
		for _, backoff := range []string{"", "exponential", "fixed"} {
			for _, initial := range []string{"", "0s", "500ms", "1s", "3s"} {
				for _, max := range []string{"", "0s", "800ms", "1s", "2s", "1h"} {
					for _, jitter := range []string{"", "0", "0.5", "1"} {
						var members []string
						for _, m := range [][2]string{{"maxAttempts", attempts}, {"backoff", backoff}, {"initial", initial}, {"max", max}, {"jitter", jitter}} {
							if m[1] != "" {
								members = append(members, m[0]+": "+m[1])
							}
						}
						src := "package: {name: p, output: ./p}\njobs:\n  - name: a\n    retry: {" + strings.Join(members, ", ") + "}\n"
						d, perr := Parse("d.yaml", []byte(src))
						var policy durably.RetryPolicy
						fmt.Sscan(attempts, &policy.MaxAttempts)
						policy.Backoff = durably.Backoff(backoff)
						policy.Initial, _ = time.ParseDuration(initial)
						policy.Max, _ = time.ParseDuration(max)
						fmt.Sscan(jitter, &policy.Jitter)
						n++
						_, rerr := durably.Register(e, &durably.Job[int, int]{Name: fmt.Sprint("j", n), Run: run, Retry: &policy})
						if (perr == nil) != (rerr == nil) {
							t.Errorf("%s: the generator says %v, the engine %v", src, perr, rerr)
							continue
						}
						if perr != nil {
							continue
						}
						accepted++
						// What is emitted is the policy the engine was given.
						if got := newEmitter(d, "d.yaml").retryPolicy(*d.Jobs[0].Retry); got != policyLiteral(policy) {
							t.Errorf("%s: emitted %s, want %s", src, got, policyLiteral(policy))
						}
					}
				}
			}
		}
	}
	t.Logf("%d policies, %d accepted", n, accepted)
	if accepted == 0 || accepted == n {
		t.Fatalf("%d of %d accepted: the combinations do not exercise both sides", accepted, n)
	}
}

// policyLiteral writes p as the emitter should, with a simpler rule for
// durations: the test's durations are whole milliseconds, seconds or hours.
func policyLiteral(p durably.RetryPolicy) string {
	dur := func(d time.Duration) string {
		switch {
		case d == time.Second:
			return "time.Second"
		case d == time.Hour:
			return "time.Hour"
		case d%time.Second == 0:
			return fmt.Sprintf("%d * time.Second", d/time.Second)
		}
		return fmt.Sprintf("%d * time.Millisecond", d/time.Millisecond)
	}
	s := fmt.Sprintf("&durably.RetryPolicy{MaxAttempts: %d", p.MaxAttempts)
	switch p.Backoff {
	case durably.BackoffExponential:
		s += ", Backoff: durably.BackoffExponential"
	case durably.BackoffFixed:
		s += ", Backoff: durably.BackoffFixed"
	}
	if p.Initial != 0 {
		s += ", Initial: " + dur(p.Initial)
	}
	if p.Max != 0 {
		s += ", Max: " + dur(p.Max)
	}
	if p.Jitter != 0 {
		s += fmt.Sprintf(", Jitter: %v", p.Jitter)
	}
	return s + "}"
}
