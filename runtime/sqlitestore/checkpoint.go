package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
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

// walCheckpoint truncates the WAL as far as it can now, on the writer
// connection, outside any transaction: with the busy timeout at zero, so
// that readers in the way (a long listing, a backup, another process's
// reader) make it stop where they are instead of holding the write lock,
// and with it every writer of the database, while it waits for them. PRAGMA
// is written by hand: sqlc's SQLite parser has no grammar for it.
func (s *Store) walCheckpoint(ctx context.Context) (busy bool, err error) {
	var b int64
	err = s.writer.Do(ctx, op{noTx: true, fn: func(ctx context.Context, _ *sql.Tx, _ *sqlitedb.Queries) (err error) {
		if _, err := s.wdb.ExecContext(ctx, "PRAGMA busy_timeout = 0"); err != nil {
			return err
		}
		defer func() {
			_, restoreErr := s.wdb.ExecContext(context.WithoutCancel(ctx), fmt.Sprintf("PRAGMA busy_timeout = %d", s.busyTimeout.Milliseconds()))
			err = errors.Join(err, restoreErr)
		}()
		var log, checkpointed int64
		return s.wdb.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&b, &log, &checkpointed)
	}})
	if err != nil {
		return false, err // b may still be written: the checkpoint can run after ctx ended
	}
	return b != 0, nil
}

// inWAL reports whether the database is in WAL mode (S-050).
func (s *Store) inWAL(ctx context.Context) (bool, error) {
	var mode string
	err := s.writer.Do(ctx, op{noTx: true, fn: func(ctx context.Context, _ *sql.Tx, _ *sqlitedb.Queries) error {
		return s.wdb.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode)
	}})
	if err != nil {
		return false, err // mode may still be written: the query can run after ctx ended
	}
	return strings.EqualFold(mode, "wal"), nil
}

// Maintain checkpoints the WAL at most once a minute, sooner again after a
// checkpoint that found readers or another writer in the way (R-141,
// The first call that gets an answer learns whether the database
// is in WAL mode at all.
func (s *Store) Maintain(ctx context.Context, now time.Time) error {
	c := &s.checkpoint
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.probed {
		wal, err := s.inWAL(ctx)
		if err != nil {
			return fmt.Errorf("sqlitestore: journal mode: %w", err) // asked again next time
		}
		c.probed, c.enabled = true, wal
	}
	if !c.enabled || now.Before(c.next) {
		return nil
	}
	busy, err := s.walCheckpoint(ctx)
	if err != nil {
		c.next = now.Add(checkpointEvery)
		return fmt.Errorf("sqlitestore: wal checkpoint: %w", err)
	}
	if busy {
		c.next = now.Add(checkpointBusyMargin)
	} else {
		c.next = now.Add(checkpointEvery)
	}
	return nil
}
