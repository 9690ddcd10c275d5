package sqlitestore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/durably-go/durably/store"
)

// checkpointStore opens a migrated store on a new file and writes a few
// runs, so that the WAL holds frames.
func checkpointStore(t *testing.T, busyTimeout time.Duration) (*Store, string) {
	t.Helper()
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "durably.db")
	s, err := Open(path, Options{BusyTimeout: busyTimeout})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	if err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		if _, err := s.Enqueue(ctx, []store.NewRun{{Run: &store.Run{ID: fmt.Sprintf("run-%d", i), JobName: "j",
			Input: []byte(`{}`), Labels: map[string]string{}, CreatedAt: time.Now()}}}); err != nil {
			t.Fatal(err)
		}
	}
	return s, path + "-wal"
}

func walSize(t *testing.T, wal string) int64 {
	t.Helper()
	fi, err := os.Stat(wal)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// idle maintenance checkpoints the WAL back into the database and
// truncates it.
func TestMaintainTruncatesTheWAL(t *testing.T) {
	s, wal := checkpointStore(t, 10*time.Second)
	if walSize(t, wal) == 0 {
		t.Fatal("the WAL is empty before the checkpoint: the test writes nothing")
	}
	if err := s.Maintain(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := walSize(t, wal); n != 0 {
		t.Fatalf("WAL %d bytes after Maintain, want 0", n)
	}
}

// R-142 without stalling writers: a reader in the WAL makes the checkpoint
// stop where it is, at once, and try again about 30 s later. A checkpoint
// that waited for the reader held the write lock, and every writer of the
// database with it, for the whole busy timeout (here 4 s).
func TestMaintainDoesNotWaitForReaders(t *testing.T) {
	ctx := context.Background()
	const busyTimeout = 4 * time.Second
	s, wal := checkpointStore(t, busyTimeout)
	conn, err := s.rdb.Conn(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback() // before conn.Close, which waits for the transaction
	var n int
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM durably_runs").Scan(&n); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	start := time.Now()
	if err := s.Maintain(ctx, now); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > busyTimeout/2 {
		t.Fatalf("Maintain held the writer %v with a reader in the WAL (busy timeout %v)", took, busyTimeout)
	}
	if want := now.Add(checkpointBusyMargin); !s.checkpoint.next.Equal(want) {
		t.Fatalf("next checkpoint at %v, want %v (sooner again after one that could not finish)", s.checkpoint.next, want)
	}
	// The writer's busy timeout is back: writes of this store still wait
	// for another process's lock rather than fail at once.
	var ms int64
	if err := s.wdb.QueryRowContext(ctx, "PRAGMA busy_timeout").Scan(&ms); err != nil || ms != busyTimeout.Milliseconds() {
		t.Fatalf("writer's busy_timeout %d ms after the checkpoint (%v), want %d", ms, err, busyTimeout.Milliseconds())
	}
	if err := tx.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := s.Maintain(ctx, now.Add(checkpointBusyMargin)); err != nil {
		t.Fatal(err)
	}
	if n := walSize(t, wal); n != 0 {
		t.Fatalf("WAL %d bytes after the reader left and Maintain ran again, want 0", n)
	}
}

// S-050: whether the database is in WAL mode is learnt from an answer, not
// from a failure: a first Maintain whose context ended leaves the question
// open, and checkpoints still happen afterwards.
func TestMaintainAsksForWALModeUntilAnswered(t *testing.T) {
	s, wal := checkpointStore(t, 10*time.Second)
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	_ = s.Maintain(ended, time.Now()) // context.Canceled, or done if the writer won the race
	if err := s.Maintain(context.Background(), time.Now()); err != nil {
		t.Fatal(err)
	}
	if n := walSize(t, wal); n != 0 {
		t.Fatalf("WAL %d bytes: checkpoints were turned off by a first Maintain that got no answer", n)
	}
}
