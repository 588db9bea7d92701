// Package cleanup keeps a stack of undo functions so that every acquisition
// can register its release the moment it succeeds (gVisor's pkg/cleanup
// habit): on an early return everything acquired so far is undone in
// reverse order; on success the caller releases the stack and keeps the
// functions for later teardown.
package cleanup

import (
	"errors"
	"sync"
)

// Stack is a LIFO of undo functions. The zero value is ready to use. It is
// not safe for concurrent use.
type Stack struct {
	fns []undo
}

type undo struct {
	fn    func() error
	async bool
}

// Add pushes an undo function.
func (s *Stack) Add(fn func() error) { s.fns = append(s.fns, undo{fn: fn}) }

// AddAsync pushes an undo function that Clean starts in a goroutine of
// its own when its turn comes, so that it overlaps the undo functions
// pushed before it; Clean returns once it has finished too. It is for an
// undo that depends on nothing pushed before it and that nothing pushed
// before it depends on (e.g. removing a cgroup beside removing a
// directory).
func (s *Stack) AddAsync(fn func() error) { s.fns = append(s.fns, undo{fn: fn, async: true}) }

// Clean runs every function in reverse order, empties the stack and
// returns all their errors joined.
func (s *Stack) Clean() error {
	var (
		mu   sync.Mutex
		errs []error
		wg   sync.WaitGroup
	)
	add := func(err error) {
		if err != nil {
			mu.Lock()
			errs = append(errs, err)
			mu.Unlock()
		}
	}
	for i := len(s.fns) - 1; i >= 0; i-- {
		if u := s.fns[i]; u.async {
			wg.Go(func() { add(u.fn()) })
		} else {
			add(u.fn())
		}
	}
	wg.Wait()
	s.fns = nil
	return errors.Join(errs...)
}

// Release empties the stack without running anything and returns the
// functions (in push order) as one undo function for later use.
func (s *Stack) Release() func() error {
	fns := s.fns
	s.fns = nil
	return func() error {
		rest := Stack{fns: fns}
		return rest.Clean()
	}
}
