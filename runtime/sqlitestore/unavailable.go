package sqlitestore

import (
	"errors"
	"fmt"

	"github.com/durably-go/durably/internal/storekit"
)

// SQLite's primary result codes that say the database could not do the work
// now rather than anything about the work: another connection holds the
// lock past the busy timeout, the disk is full, or the file system failed.
// Extended codes carry the primary one in their low byte.
const (
	codeBusy   = 5  // SQLITE_BUSY
	codeLocked = 6  // SQLITE_LOCKED
	codeIOErr  = 10 // SQLITE_IOERR
	codeFull   = 13 // SQLITE_FULL
)

// classify marks the transient failures as store.ErrUnavailable: the
// engine retries them and the HTTP handler answers 503.
func classify(err error) error { return storekit.Classify(err, transient) }

func transient(err error) bool {
	// modernc.org/sqlite's *Error, and the injected faults below.
	var coded interface{ Code() int }
	if !errors.As(err, &coded) {
		return false
	}
	switch coded.Code() & 0xff {
	case codeBusy, codeLocked, codeIOErr, codeFull:
		return true
	}
	return false
}

// Fault is a failure InjectFault makes every write fail with.
type Fault int

// The faults a test can inject: the codes SQLite itself would report.
const (
	NoFault       Fault = 0
	FaultBusy     Fault = codeBusy // another process holds the write lock past the busy timeout
	FaultDiskFull Fault = codeFull // the disk (or max_page_count) is full
)

// faultError is an injected failure, shaped like modernc.org/sqlite's errors
// so that it is classified like a real one.
type faultError struct{ code Fault }

func (e *faultError) Code() int { return int(e.code) }

func (e *faultError) Error() string {
	switch e.code {
	case FaultBusy:
		return "database is locked (5) (SQLITE_BUSY, injected)"
	case FaultDiskFull:
		return "database or disk is full (13) (SQLITE_FULL, injected)"
	}
	return fmt.Sprintf("sqlite error %d (injected)", int(e.code))
}

// InjectFault makes every write transaction of the store (triggers, claims,
// steps, renewals, finishes, maintenance) fail with f until it is called
// with NoFault, as if another process held the lock or the disk were full.
// It exists for fault-injection tests; reads are not affected.
func (s *Store) InjectFault(f Fault) { s.fault.Store(int32(f)) }

// injected returns the injected fault's error, or nil.
func (s *Store) injected() error {
	if f := Fault(s.fault.Load()); f != NoFault {
		return &faultError{code: f}
	}
	return nil
}
