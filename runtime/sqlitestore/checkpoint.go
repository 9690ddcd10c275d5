package sqlitestore

import (
	"context"
	"database/sql"
	"fmt"
	"sync"
	"time"

	"github.com/durably-go/durably/runtime/sqlitestore/internal/sqlitedb"
)

// The WAL grows until a checkpoint copies it back into the database file.
// SQLite checkpoints on its own when it can, but a busy database may never
// find a moment; idle maintenance gives it one (R-140 … R-142, S-050).
const (
	checkpointEvery      = 60 * time.Second
	checkpointBusyMargin = 30 * time.Second
)

type checkpointState struct {
	mu      sync.Mutex
	probed  bool
	enabled bool
	next    time.Time
}

// walCheckpoint runs PRAGMA wal_checkpoint(mode) on the writer connection,
// outside any transaction. PRAGMA is written by hand: sqlc's SQLite parser
// has no grammar for it.
func (s *Store) walCheckpoint(ctx context.Context, mode string) (busy, log int64, err error) {
	var b, l int64
	err = s.writer.Do(ctx, op{noTx: true, fn: func(ctx context.Context, _ *sql.Tx, _ *sqlitedb.Queries) error {
		var checkpointed int64
		return s.wdb.QueryRowContext(ctx, "PRAGMA wal_checkpoint("+mode+")").Scan(&b, &l, &checkpointed)
	}})
	if err != nil {
		return 0, 0, err // b and l may still be written: the checkpoint can run after ctx ended
	}
	return b, l, nil
}

// Maintain checkpoints the WAL at most once a minute, sooner again after a
// checkpoint that found readers in the way. The first call probes whether
// checkpoints apply at all (not in WAL mode: log is -1).
func (s *Store) Maintain(ctx context.Context, now time.Time) error {
	c := &s.checkpoint
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.probed {
		c.probed = true
		_, log, err := s.walCheckpoint(ctx, "PASSIVE")
		c.enabled = err == nil && log != -1
	}
	if !c.enabled || now.Before(c.next) {
		return nil
	}
	busy, _, err := s.walCheckpoint(ctx, "TRUNCATE")
	if err != nil {
		c.next = now.Add(checkpointEvery)
		return fmt.Errorf("sqlitestore: wal checkpoint: %w", err)
	}
	if busy != 0 {
		c.next = now.Add(checkpointBusyMargin)
	} else {
		c.next = now.Add(checkpointEvery)
	}
	return nil
}
