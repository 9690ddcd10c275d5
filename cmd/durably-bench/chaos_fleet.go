package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"sync"
)

// chaosFleet keeps one worker process of the chaos workload alive: it
// starts a new one whenever the current one dies, whether the workload
// killed it (SIGKILL) or a poison step made it exit, and remembers every
// process that died, which the effect log's analysis needs (a step may run
// again only where its executor died).
type chaosFleet struct {
	start func() (*exec.Cmd, error)

	mu          sync.Mutex
	cur         *chaosWorker
	stopping    bool
	dead        map[int]bool
	kills       int
	poisonExits int
	err         error // a worker that ended otherwise, or could not start
}

type chaosWorker struct {
	cmd    *exec.Cmd
	killed bool          // by the workload
	gone   chan struct{} // closed once its death is recorded and its successor started
}

func newChaosFleet(start func() (*exec.Cmd, error)) (*chaosFleet, error) {
	f := &chaosFleet{start: start, dead: map[int]bool{}}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f, f.spawnLocked()
}

// spawnLocked starts a worker and watches it; f.mu is held.
func (f *chaosFleet) spawnLocked() error {
	cmd, err := f.start()
	if err != nil {
		return err
	}
	w := &chaosWorker{cmd: cmd, gone: make(chan struct{})}
	f.cur = w
	go f.watch(w)
	return nil
}

// watch waits for w to end, records how, and starts its successor unless
// the fleet is stopping.
func (f *chaosFleet) watch(w *chaosWorker) {
	err := w.cmd.Wait()
	f.mu.Lock()
	defer f.mu.Unlock()
	defer close(w.gone)
	var exit *exec.ExitError
	poisoned := errors.As(err, &exit) && exit.ExitCode() == chaosPoisonExit
	switch {
	case poisoned: // before killed: a poisoned worker may be killed after its exit
		f.poisonExits++
	case w.killed:
		f.kills++
	case f.stopping && err == nil:
		return // the last worker, stopped by SIGINT
	default:
		f.err = errors.Join(f.err, fmt.Errorf("worker %d ended on its own: %v", w.cmd.Process.Pid, err))
		return
	}
	f.dead[w.cmd.Process.Pid] = true
	if f.stopping || f.cur != w {
		return
	}
	if err := f.spawnLocked(); err != nil {
		f.err = errors.Join(f.err, fmt.Errorf("start a worker: %w", err))
	}
}

// kill SIGKILLs the current worker and returns once its successor started.
func (f *chaosFleet) kill() error {
	f.mu.Lock()
	w := f.cur
	w.killed = true
	f.mu.Unlock()
	_ = w.cmd.Process.Kill()
	<-w.gone
	return f.failure()
}

// stop interrupts the current worker (it stops as a deployment would) and
// waits for it.
func (f *chaosFleet) stop() error {
	f.mu.Lock()
	f.stopping = true
	w := f.cur
	f.mu.Unlock()
	_ = w.cmd.Process.Signal(os.Interrupt)
	<-w.gone
	return f.failure()
}

func (f *chaosFleet) failure() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.err
}

// deaths returns the pids of the workers that died, and how many were
// killed and how many exited on a poison step.
func (f *chaosFleet) deaths() (dead map[int]bool, kills, poisonExits int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	dead = make(map[int]bool, len(f.dead))
	for pid := range f.dead {
		dead[pid] = true
	}
	return dead, f.kills, f.poisonExits
}
