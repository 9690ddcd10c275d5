package storekit_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/durably-go/durably/internal/storekit"
	"github.com/durably-go/durably/store"
)

var errUnique = errors.New("unique violation")

// fakeLeases records what the algorithms do with savepoints and statements.
type fakeLeases struct {
	log     []string
	refuse  map[string]bool // ids whose return to pending hits the pending index
	expired []string
}

func (f *fakeLeases) Savepoint(context.Context) (rollback, release func(context.Context) error, err error) {
	f.log = append(f.log, "savepoint")
	return func(context.Context) error { f.log = append(f.log, "rollback"); return nil },
		func(context.Context) error { f.log = append(f.log, "release"); return nil }, nil
}

func (f *fakeLeases) IsUniqueViolation(err error) bool { return errors.Is(err, errUnique) }

func (f *fakeLeases) ReleaseLease(_ context.Context, l store.Lease, _ time.Time) (int64, error) {
	f.log = append(f.log, "release-lease "+l.RunID)
	if f.refuse[l.RunID] {
		return 0, errUnique
	}
	return 1, nil
}

func (f *fakeLeases) ExpireLease(_ context.Context, l store.Lease, _ time.Time) (int64, error) {
	f.log = append(f.log, "expire-lease "+l.RunID)
	return 1, nil
}

func (f *fakeLeases) ListExpiredLeases(context.Context, time.Time) ([]string, error) {
	return f.expired, nil
}

func (f *fakeLeases) ResetExpiredLease(_ context.Context, id string, _ time.Time) (int64, error) {
	f.log = append(f.log, "reset "+id)
	if f.refuse[id] {
		return 0, errUnique
	}
	return 1, nil
}

// TestLeaseAlgorithmsD12 checks the refusal paths of D12 that a real
// database reaches only in a race: a refused return to pending is undone
// alone (its savepoint), the hand-back then expires the lease, and the
// expiry sweep leaves the run an expired lease and goes on.
func TestLeaseAlgorithmsD12(t *testing.T) {
	ctx, now := context.Background(), time.Now()
	tests := []struct {
		name   string
		run    func(f *fakeLeases) (int, error)
		refuse []string
		want   int
		log    []string
	}{
		{"release to pending", func(f *fakeLeases) (int, error) {
			ok, err := storekit.ReleaseLease(ctx, f, store.Lease{RunID: "a", Generation: 1}, now)
			return map[bool]int{true: 1}[ok], err
		}, nil, 1, []string{"savepoint", "release-lease a", "release"}},
		{"release refused by a pending sibling expires the lease", func(f *fakeLeases) (int, error) {
			ok, err := storekit.ReleaseLease(ctx, f, store.Lease{RunID: "a", Generation: 1}, now)
			return map[bool]int{true: 1}[ok], err
		}, []string{"a"}, 1, []string{"savepoint", "release-lease a", "rollback", "expire-lease a"}},
		{"expiry sweep skips a refused reset", func(f *fakeLeases) (int, error) {
			f.expired = []string{"a", "b", "c"}
			return storekit.ReleaseExpiredLeases(ctx, f, now)
		}, []string{"b"}, 2, []string{
			"savepoint", "reset a", "release",
			"savepoint", "reset b", "rollback",
			"savepoint", "reset c", "release",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeLeases{refuse: map[string]bool{}}
			for _, id := range tt.refuse {
				f.refuse[id] = true
			}
			n, err := tt.run(f)
			if err != nil || n != tt.want {
				t.Fatalf("got %d, %v; want %d", n, err, tt.want)
			}
			if !slices.Equal(f.log, tt.log) {
				t.Errorf("statements %q, want %q", f.log, tt.log)
			}
		})
	}
}

func TestLoadMigrations(t *testing.T) {
	tests := []struct {
		name     string
		files    []string
		versions []int
		err      string
	}{
		{"in order", []string{"0002_b.sql", "0001_a.sql", "0003_c.sql", "README.md"}, []int{1, 2, 3}, ""},
		{"a gap", []string{"0001_a.sql", "0003_c.sql"}, nil, "version 3 where 2 was expected"},
		{"a bad name", []string{"0001_a.sql", "second.sql"}, nil, "NNNN_name.sql"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for _, f := range tt.files {
				fsys["m/"+f] = &fstest.MapFile{Data: []byte("-- " + f)}
			}
			got, err := storekit.LoadMigrations(fsys, "m")
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want one saying %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var versions []int
			for _, m := range got {
				versions = append(versions, m.Version)
			}
			if !slices.Equal(versions, tt.versions) {
				t.Errorf("versions %v, want %v", versions, tt.versions)
			}
		})
	}
}
