package mcp

import (
	"bytes"
	"errors"
	"io"
	"sync/atomic"
	"testing"
	"time"
)

// A client that stops reading and then closes its input: the write that
// waits for it gives up within eofWriteTimeout of the end of input, not
// the full write timeout, so teardown is not held.
func TestLineWriterGivesUpAfterInputEnds(t *testing.T) {
	pr, pw := io.Pipe() // never read
	defer pr.Close()
	w := newLineWriter(pw, time.Minute)
	var stalled atomic.Bool
	w.onStall = func() { stalled.Store(true) }
	done := make(chan error, 1)
	go func() { _, err := w.Write([]byte("answer\n")); done <- err }()
	time.Sleep(100 * time.Millisecond)
	start := time.Now()
	w.inputEnded()
	select {
	case err := <-done:
		if !errors.Is(err, errWriterBroken) {
			t.Errorf("write: %v", err)
		}
	case <-time.After(eofWriteTimeout + 5*time.Second):
		t.Fatal("the write still waits long after input ended")
	}
	if took := time.Since(start); took > eofWriteTimeout+time.Second || !stalled.Load() {
		t.Errorf("gave up after %v (stall reported: %v)", took, stalled.Load())
	}
	// Every later write fails at once.
	if _, err := w.Write([]byte("more\n")); !errors.Is(err, errWriterBroken) {
		t.Errorf("later write: %v", err)
	}
}

// A client that reads still gets its answers after closing its input.
func TestLineWriterAfterInputEndsToAReader(t *testing.T) {
	var b bytes.Buffer
	w := newLineWriter(&b, time.Minute)
	w.inputEnded()
	for range 3 {
		if _, err := w.Write([]byte("answer\n")); err != nil {
			t.Fatal(err)
		}
	}
	if b.String() != "answer\nanswer\nanswer\n" {
		t.Errorf("wrote %q", b.String())
	}
}
