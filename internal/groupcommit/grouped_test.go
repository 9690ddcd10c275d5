package groupcommit_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/durably-go/durably/internal/groupcommit"
)

// TestGrouped checks the failure policy of a group: one commit when all is
// well; each write alone after a group failure, so that only the bad write
// fails; no retry alone after a transient failure or for a group of one.
func TestGrouped(t *testing.T) {
	errBad := errors.New("constraint violated")
	errDown := errors.New("connection refused")
	transient := func(err error) bool { return errors.Is(err, errDown) }
	tests := []struct {
		name    string
		ops     []string
		fail    func(group []string) error // the commit's outcome for a group
		commits [][]string
		errs    []error
	}{
		{
			name:    "all good",
			ops:     []string{"a", "b", "c"},
			fail:    func([]string) error { return nil },
			commits: [][]string{{"a", "b", "c"}},
			errs:    []error{nil, nil, nil},
		},
		{
			name: "one bad write fails only itself",
			ops:  []string{"a", "bad", "c"},
			fail: func(g []string) error {
				if slices.Contains(g, "bad") {
					return errBad
				}
				return nil
			},
			commits: [][]string{{"a", "bad", "c"}, {"a"}, {"bad"}, {"c"}},
			errs:    []error{nil, errBad, nil},
		},
		{
			name:    "a transient failure fails everyone, no retry alone",
			ops:     []string{"a", "b"},
			fail:    func([]string) error { return errDown },
			commits: [][]string{{"a", "b"}},
			errs:    []error{errDown, errDown},
		},
		{
			name:    "a group of one is not retried",
			ops:     []string{"bad"},
			fail:    func([]string) error { return errBad },
			commits: [][]string{{"bad"}},
			errs:    []error{errBad},
		},
		{
			name:    "nothing to commit",
			ops:     nil,
			fail:    func([]string) error { t.Fatal("commit called for an empty group"); return nil },
			commits: nil,
			errs:    []error{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var commits [][]string
			var resets []string
			commit := func(_ context.Context, g []string) error {
				commits = append(commits, slices.Clone(g))
				return tt.fail(g)
			}
			errs := groupcommit.Grouped(context.Background(), tt.ops, commit, transient, func(o string) { resets = append(resets, o) })
			if !slices.EqualFunc(commits, tt.commits, slices.Equal) {
				t.Errorf("commits %q, want %q", commits, tt.commits)
			}
			if !slices.Equal(errs, tt.errs) {
				t.Errorf("errors %v, want %v", errs, tt.errs)
			}
			if len(tt.commits) > 1 && !slices.Equal(resets, tt.ops) {
				t.Errorf("reset %q before the retries alone, want %q", resets, tt.ops)
			}
		})
	}
}
