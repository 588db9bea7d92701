package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/vial-run/vial/cgroups"
)

// TestWarmPoolRealSandboxes: on runc, the warm pool fills with real
// sandboxes; when every warm sandbox is killed from outside (as the OOM
// killer or an operator might), none of them is handed out: create_context
// still gives a working context, and the pool starts new ones in their
// place. A pooled create_context then takes a warm sandbox.
func TestWarmPoolRealSandboxes(t *testing.T) {
	s := startServe(t, "runc", "--pool-size", "1")
	waitFor := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(60 * time.Second); !ok(); time.Sleep(50 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("waited 60 s for %s; metrics: %+v", what, s.metricsResource().Sandboxes)
			}
		}
	}
	// Filled: every sandbox is a pooled one, and the pool has stopped
	// starting more.
	var warm []string
	waitFor("the pool to fill", func() bool {
		m := s.metricsResource().Sandboxes
		if m.Pooled == 0 || m.Pooled != m.Live {
			return false
		}
		time.Sleep(300 * time.Millisecond)
		again := s.metricsResource().Sandboxes
		warm = s.sandboxIDs()
		return again == m && uint64(len(warm)) == m.Live
	})
	started := s.metricsResource().Sandboxes.Started
	t.Logf("pool filled: %d warm sandboxes", len(warm))

	for _, id := range warm {
		killSandbox(t, id)
	}
	// Their processes are gone; create_context must not hand one out.
	time.Sleep(100 * time.Millisecond)
	begin := time.Now()
	id := s.newContext("python")
	t.Logf("create_context with every warm sandbox dead: %v", time.Since(begin))
	if r := s.mustOK("run_code", map[string]any{"context_id": id, "code": "6*7"}); r.sc["value"] != "42" {
		t.Fatalf("the context after the kill: %v %s", r.sc["value"], r.text)
	}
	// The pool notices a warm sandbox's end by itself (not at its next
	// health check, 30 s away): every killed one is removed and replaced.
	waitFor("the pool to remove and replace the dead", func() bool {
		now := s.sandboxIDs()
		for _, dead := range warm {
			if slices.Contains(now, dead) {
				return false
			}
		}
		m := s.metricsResource().Sandboxes
		return m.Pooled == uint64(len(warm)) && m.Started >= started+uint64(len(warm))
	})
	s.mustOK("stop_context", map[string]any{"context_id": id})

	begin = time.Now()
	id = s.newContext("python")
	t.Logf("pooled create_context: %v", time.Since(begin))
	if r := s.mustOK("run_code", map[string]any{"context_id": id, "code": "6*7"}); r.sc["value"] != "42" {
		t.Fatalf("pooled context: %v %s", r.sc["value"], r.text)
	}
	waitFor("the pool to refill after use", func() bool {
		return s.metricsResource().Sandboxes.Pooled >= 1
	})
}

// killSandbox kills every process of sandbox id through its cgroup, as
// vial's own teardown does, and waits until none is left.
func killSandbox(t *testing.T, id string) {
	t.Helper()
	g, err := cgroups.Load(id)
	if err != nil {
		t.Fatalf("the cgroup of sandbox %s: %v", id, err)
	}
	if err := g.Kill(10 * time.Second); err != nil {
		t.Fatalf("killing sandbox %s: %v", id, err)
	}
}
