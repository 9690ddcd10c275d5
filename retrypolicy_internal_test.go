package durably

import (
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"
)

// TestRetryPolicyDelay: R-075's backoff: exponential doubles from Initial
// up to Max, fixed stays at Initial, zero Initial is DefaultRetryInitial,
// and no attempt number overflows the wait.
func TestRetryPolicyDelay(t *testing.T) {
	tests := []struct {
		name    string
		p       RetryPolicy
		attempt int
		want    time.Duration
	}{
		{"exponential first", RetryPolicy{MaxAttempts: 5, Initial: time.Second}, 1, time.Second},
		{"exponential third", RetryPolicy{MaxAttempts: 5, Initial: time.Second}, 3, 4 * time.Second},
		{"exponential default kind", RetryPolicy{MaxAttempts: 5, Backoff: BackoffExponential, Initial: 100 * time.Millisecond}, 4, 800 * time.Millisecond},
		{"exponential capped", RetryPolicy{MaxAttempts: 50, Initial: time.Second, Max: 10 * time.Second}, 10, 10 * time.Second},
		{"exponential huge attempt", RetryPolicy{MaxAttempts: math.MaxInt, Initial: time.Second}, 200, time.Second << 32},
		{"fixed", RetryPolicy{MaxAttempts: 5, Backoff: BackoffFixed, Initial: 3 * time.Second}, 4, 3 * time.Second},
		{"default initial", RetryPolicy{MaxAttempts: 2}, 1, DefaultRetryInitial},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.p.Delay(tt.attempt); got != tt.want {
				t.Fatalf("Delay(%d) = %s, want %s", tt.attempt, got, tt.want)
			}
		})
	}
}

// TestRetryPolicyJitter: jitter only shortens a wait, by at most Jitter
// of it.
func TestRetryPolicyJitter(t *testing.T) {
	p := RetryPolicy{MaxAttempts: 3, Initial: 10 * time.Second, Jitter: 0.5}
	for _, r := range []float64{0, 0.25, 0.999} {
		got := p.delay(1, func() float64 { return r })
		want := 10*time.Second - time.Duration(float64(10*time.Second)*0.5*r)
		if got != want || got > 10*time.Second || got < 5*time.Second {
			t.Fatalf("r=%v: delay %s, want %s", r, got, want)
		}
	}
}

// TestRetryPolicyValidate: each invalid field is refused with its name.
func TestRetryPolicyValidate(t *testing.T) {
	tests := []struct {
		p     RetryPolicy
		field string // "" means valid
	}{
		{RetryPolicy{MaxAttempts: 1}, ""},
		{RetryPolicy{MaxAttempts: 3, Backoff: BackoffFixed, Initial: time.Second, Max: time.Minute, Jitter: 1}, ""},
		{RetryPolicy{MaxAttempts: 0}, "MaxAttempts"},
		{RetryPolicy{MaxAttempts: 2, Backoff: "linear"}, "Backoff"},
		{RetryPolicy{MaxAttempts: 2, Initial: -1}, "Initial"},
		{RetryPolicy{MaxAttempts: 2, Max: -1}, "Max"},
		{RetryPolicy{MaxAttempts: 2, Initial: time.Minute, Max: time.Second}, "Max"},
		{RetryPolicy{MaxAttempts: 2, Jitter: 1.5}, "Jitter"},
		{RetryPolicy{MaxAttempts: 2, Jitter: math.NaN()}, "Jitter"},
	}
	for _, tt := range tests {
		err := tt.p.validate()
		switch {
		case tt.field == "" && err != nil:
			t.Errorf("%+v: unexpected error %v", tt.p, err)
		case tt.field != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.field)):
			t.Errorf("%+v: error %v, want one naming %s", tt.p, err, tt.field)
		}
	}
}

// TestRetryableRunError: which job-level errors R-078 retries.
func TestRetryableRunError(t *testing.T) {
	plain := errors.New("boom")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"plain", plain, true},
		{"wrapped plain", fmt.Errorf("job: %w", plain), true},
		{"permanent", Permanent(plain), false},
		{"wrapped permanent", fmt.Errorf("job: %w", Permanent(plain)), false},
		{"spent step", fmt.Errorf("job: %w", &stepFailure{err: plain}), false},
		{"output", &outputError{msg: "bad"}, false},
		{"cancelled", cancelledError("r"), false},
		{"lease lost", leaseLostError("r"), false},
		{"shutdown", ErrShutdown, false},
		{"suspended", suspendedError("r", time.Unix(0, 0)), false},
	}
	for _, tt := range tests {
		if got := retryableRunError(tt.err); got != tt.want {
			t.Errorf("%s: retryable %v, want %v", tt.name, got, tt.want)
		}
	}
	if Permanent(nil) != nil {
		t.Error("Permanent(nil) is not nil")
	}
	if got := Permanent(plain).Error(); got != "boom" {
		t.Errorf("Permanent message %q", got)
	}
}
