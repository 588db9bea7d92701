package service

import (
	"context"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/vial-run/vial/internal/human"
)

// admission is the one bound on sandboxes the service starts: live
// contexts and one-shot runs (and, later, pooled sandboxes) each hold a
// slot for as long as their sandbox exists. A request for a slot when all
// are taken waits up to wait, with at most maxWaiting others; then it is
// refused with a ResourceExhausted error that says so. A zero wait refuses
// at once.
type admission struct {
	max        int
	wait       time.Duration
	maxWaiting int

	mu      sync.Mutex
	used    int
	waiting int
	freed   chan struct{} // closed and replaced whenever a slot is released
	// evict, if set, gives up a slot held by a warm pool member (it
	// reports whether it did): requests come before warm spares.
	evict func() bool
}

func newAdmission(max int, wait time.Duration, maxWaiting int) *admission {
	return &admission{max: max, wait: wait, maxWaiting: maxWaiting, freed: make(chan struct{})}
}

// acquire takes a slot, waiting as configured. what says what the slot is
// for, in the refusal.
func (a *admission) acquire(ctx context.Context, what string) (release func(), err error) {
	var deadline <-chan time.Time
	a.mu.Lock()
	for {
		if a.used >= a.max && a.evict != nil {
			a.mu.Unlock()
			evicted := a.evict()
			a.mu.Lock()
			if evicted {
				continue
			}
		}
		if a.used < a.max {
			a.used++
			a.mu.Unlock()
			var once sync.Once
			return func() { once.Do(a.release) }, nil
		}
		if a.wait <= 0 {
			a.mu.Unlock()
			return nil, errorf(errdefs.ErrResourceExhausted, "all %d sandboxes are in use (the maximum is %d); stop a context you no longer need (stop_context) and try again", a.used, a.max)
		}
		if deadline == nil {
			if a.waiting >= a.maxWaiting {
				a.mu.Unlock()
				return nil, errorf(errdefs.ErrResourceExhausted, "all %d sandboxes are in use and %d requests are already waiting for one; try again later", a.max, a.waiting)
			}
			t := time.NewTimer(a.wait)
			defer t.Stop()
			deadline = t.C
			a.waiting++
			defer func() {
				a.mu.Lock()
				a.waiting--
				a.mu.Unlock()
			}()
		}
		freed := a.freed
		a.mu.Unlock()
		select {
		case <-freed:
		case <-deadline:
			return nil, errorf(errdefs.ErrResourceExhausted, "no sandbox became free within %s for %s (all %d are in use); stop a context you no longer need (stop_context) and try again", human.Duration(a.wait), what, a.max)
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		a.mu.Lock()
	}
}

// tryAcquire takes a slot only if one is free.
func (a *admission) tryAcquire() (release func(), ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.used >= a.max {
		return nil, false
	}
	a.used++
	var once sync.Once
	return func() { once.Do(a.release) }, true
}

func (a *admission) release() {
	a.mu.Lock()
	a.used--
	close(a.freed)
	a.freed = make(chan struct{})
	a.mu.Unlock()
}
