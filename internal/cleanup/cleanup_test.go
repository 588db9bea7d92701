package cleanup

import (
	"errors"
	"slices"
	"sync"
	"testing"
)

func TestCleanOrder(t *testing.T) {
	var got []int
	var s Stack
	for i := range 3 {
		s.Add(func() error { got = append(got, i); return nil })
	}
	if err := s.Clean(); err != nil || !slices.Equal(got, []int{2, 1, 0}) {
		t.Errorf("Clean ran %v (%v), want [2 1 0]", got, err)
	}
	if s.Clean() != nil || len(got) != 3 {
		t.Error("a second Clean ran something")
	}
}

// TestAddAsync: an async undo overlaps the undos pushed before it, Clean
// waits for it, and every error is reported.
func TestAddAsync(t *testing.T) {
	var s Stack
	release := make(chan struct{})
	var mu sync.Mutex
	var order []string
	note := func(n string) {
		mu.Lock()
		order = append(order, n)
		mu.Unlock()
	}
	errA, errB := errors.New("a"), errors.New("b")
	s.Add(func() error { note("first"); close(release); return errA })
	// Blocks until the undo pushed before it has run: without overlap,
	// Clean would never return.
	s.AddAsync(func() error { <-release; note("async"); return errB })
	err := s.Release()()
	if !errors.Is(err, errA) || !errors.Is(err, errB) {
		t.Errorf("Clean returned %v, want both errors", err)
	}
	if !slices.Equal(order, []string{"first", "async"}) {
		t.Errorf("order %v", order)
	}
}
