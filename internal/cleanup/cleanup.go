// Package cleanup keeps a stack of undo functions so that every acquisition
// can register its release the moment it succeeds (gVisor's pkg/cleanup
// habit): on an early return everything acquired so far is undone in
// reverse order; on success the caller releases the stack and keeps the
// functions for later teardown.
package cleanup

import "errors"

// Stack is a LIFO of undo functions. The zero value is ready to use. It is
// not safe for concurrent use.
type Stack struct {
	fns []func() error
}

// Add pushes an undo function.
func (s *Stack) Add(fn func() error) { s.fns = append(s.fns, fn) }

// Clean runs every function in reverse order, empties the stack and
// returns all their errors joined.
func (s *Stack) Clean() error {
	var errs []error
	for i := len(s.fns) - 1; i >= 0; i-- {
		if err := s.fns[i](); err != nil {
			errs = append(errs, err)
		}
	}
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
