package durably

// Fence is the fencing token of one execution of a run: the run, and the
// generation of the lease the execution holds. Every lease a run is given
// (its first claim, a resume after a crash, a reclaim after a lost lease)
// has a higher generation than the one before, so of two executions of a
// run, the later one always carries the higher Fence.
//
// The engine fences its own writes with it: a worker that lost its lease
// cannot record a step. A side effect outside the database (a payment
// API, an object store, another database) cannot see the lease, so a
// worker that was paused past its lease (a long GC, a stopped VM, SIGSTOP)
// may still complete it after another worker took the run over. To fence
// such a side effect, send the Fence along and have the other system keep,
// per run ID, the highest generation it has accepted and refuse anything
// lower. Equal generations are the same execution, which may repeat a
// step (at-least-once): key the side effect itself idempotently too, for
// example by run ID and step name.
type Fence struct {
	RunID      string
	Generation int64
}

// LeaseGeneration returns the generation of the lease this execution of
// the run holds: see Fence.
func (s *StepContext) LeaseGeneration() int64 { return s.lease.Generation }

// Fence returns this execution's fencing token: the run ID and the lease
// generation.
func (s *StepContext) Fence() Fence { return Fence{RunID: s.run.ID, Generation: s.lease.Generation} }
