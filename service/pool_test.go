package service_test

import (
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/service"
	"github.com/vial-run/vial/service/servicetest"
)

// waitFor polls cond for up to 5 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The pool warms the agent's environment at start, hands warm sandboxes
// to create_context, execute_python and a new session's first default
// context, and refills after each.
func TestPoolHandsOutAndRefills(t *testing.T) {
	t.Parallel()
	svc, p := newService(t, service.Options{Pool: service.PoolOptions{Size: 2}})
	waitFor(t, "the pool to fill", func() bool { return p.Live() == 3 }) // python: 1 shared + 2 private
	s := open(t, svc, "a")

	started := p.Started.Load()
	t0 := time.Now()
	c, err := s.CreateContext(t.Context(), service.CreateRequest{Language: service.Python, Name: "warm"})
	took := time.Since(t0)
	if err != nil {
		t.Fatal(err)
	}
	if p.Started.Load() != started {
		// The refill may have started by now; what must hold is that
		// the context existed before any new start finished.
		t.Logf("a refill started during create (%d → %d)", started, p.Started.Load())
	}
	t.Logf("pooled create_context took %v", took)
	if res := run(t, s, service.RunRequest{ContextID: c.ID, Code: "echo warm"}); res.Stdout != "warm" {
		t.Errorf("pooled context: %+v", res)
	}
	waitFor(t, "the refill", func() bool { return p.Live() == 4 })

	// The session's first default context takes a shared member, whose
	// workspace becomes the session's.
	run(t, s, service.RunRequest{Code: "echo default"})
	if _, err := s.WriteFile(t.Context(), service.WriteRequest{Path: "f.txt", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refill", func() bool { return p.Live() == 5 })
	// execute_python takes a private member and gives it up after.
	res, err := s.RunOnce(t.Context(), service.RunRequest{Code: "echo once"})
	if err != nil || res.Stdout != "once" {
		t.Fatalf("RunOnce: %+v %v", res, err)
	}
	waitFor(t, "the refill", func() bool { return p.Live() == 5 })
	// Languages not pooled start cold.
	before := p.Started.Load()
	run(t, s, service.RunRequest{Language: service.Bash, Code: "echo cold"})
	if p.Started.Load() != before+1 {
		t.Errorf("bash started %d sandboxes, want 1", p.Started.Load()-before)
	}
}

// A warm sandbox that dies is found by the health check and replaced.
func TestPoolReplacesDeadMembers(t *testing.T) {
	t.Parallel()
	svc, p := newService(t, service.Options{Pool: service.PoolOptions{Size: 1, HealthInterval: 50 * time.Millisecond}})
	_ = svc
	waitFor(t, "the pool to fill", func() bool { return p.Live() == 2 })
	first := p.Started.Load()
	for _, sb := range p.Sandboxes() {
		sb.Kill()
	}
	waitFor(t, "the dead to be replaced", func() bool { return p.Started.Load() >= first+2 && p.Live() == 2 })
}

// A warm sandbox that ends is replaced at once, not at the next health
// check.
func TestPoolReplacesDeadMembersAtOnce(t *testing.T) {
	t.Parallel()
	_, p := newService(t, service.Options{Pool: service.PoolOptions{Size: 1, HealthInterval: time.Hour}})
	waitFor(t, "the pool to fill", func() bool { return p.Live() == 2 })
	first := p.Started.Load()
	for _, sb := range p.Sandboxes() {
		sb.Kill()
	}
	waitFor(t, "the dead to be replaced", func() bool { return p.Started.Load() >= first+2 && p.Live() == 2 })
}

// Warm sandboxes never make a request fail for want of a slot: a cold
// start takes the slot of a warm spare.
func TestPoolGivesWayToRequests(t *testing.T) {
	t.Parallel()
	svc, p := newService(t, service.Options{MaxSandboxes: 2, Pool: service.PoolOptions{Size: 2}})
	waitFor(t, "the pool to take every slot", func() bool { return p.Live() == 2 })
	s := open(t, svc, "a")
	for _, lang := range []service.Language{service.Bash, service.JavaScript} {
		if _, err := s.CreateContext(t.Context(), service.CreateRequest{Language: lang}); err != nil {
			t.Fatalf("%s: %v", lang, err)
		}
	}
	if p.Live() != 2 {
		t.Errorf("%d sandboxes live, want the 2 contexts", p.Live())
	}
}

// With FailWhenEmpty, a request that finds no warm sandbox in time is
// refused with a clear error instead of starting one.
func TestPoolFailWhenEmpty(t *testing.T) {
	t.Parallel()
	p := servicetest.New(t)
	p.StartDelay = 500 * time.Millisecond
	svc, _ := newService(t, service.Options{Provider: p, Pool: service.PoolOptions{Size: 1, Wait: 50 * time.Millisecond, FailWhenEmpty: true}})
	s := open(t, svc, "a")
	_, err := s.CreateContext(t.Context(), service.CreateRequest{Language: service.Python})
	if !errdefs.IsResourceExhausted(err) {
		t.Errorf("empty pool: %v", err)
	}
}

// The result cache answers a repeated execute_python only when the
// operator turned it on, says so, and never for a stateful context.
func TestResultCache(t *testing.T) {
	t.Parallel()
	for _, on := range []bool{false, true} {
		var o service.Options
		if on {
			o.Cache = service.CacheOptions{Entries: 8}
		}
		svc, p := newService(t, o)
		s := open(t, svc, "a")
		first, err := s.RunOnce(t.Context(), service.RunRequest{Code: "echo same"})
		if err != nil {
			t.Fatal(err)
		}
		started := p.Started.Load()
		second, err := s.RunOnce(t.Context(), service.RunRequest{Code: "echo same"})
		if err != nil || second.Stdout != first.Stdout {
			t.Fatalf("second run: %+v %v", second, err)
		}
		cachedNow := p.Started.Load() == started
		if cachedNow != on {
			t.Errorf("cache on=%v: the second run started %d sandboxes", on, p.Started.Load()-started)
		}
		if on && (len(second.Notices) == 0 || !strings.Contains(second.Notices[0], "from the cache")) {
			t.Errorf("a cached result does not say so: %q", second.Notices)
		}
		// Other code, or another time limit, is not the same run.
		started = p.Started.Load()
		s.RunOnce(t.Context(), service.RunRequest{Code: "echo other"})
		s.RunOnce(t.Context(), service.RunRequest{Code: "echo same", Timeout: time.Second})
		if p.Started.Load() != started+2 {
			t.Errorf("cache on=%v: different runs started %d sandboxes, want 2", on, p.Started.Load()-started)
		}
		// Contexts are never cached.
		run(t, s, service.RunRequest{Code: "set x 1"})
		if res := run(t, s, service.RunRequest{Code: "get x"}); res.Value != "1" || len(res.Notices) != 0 {
			t.Errorf("a context call: %+v", res)
		}
	}
}

// A warm sandbox whose driver hangs (its process alive, no answer) fails
// the driver's ping and is replaced.
func TestPoolReplacesHungMembers(t *testing.T) {
	t.Parallel()
	svc, p := newService(t, service.Options{Pool: service.PoolOptions{Size: 1, HealthInterval: 100 * time.Millisecond}})
	_ = svc
	waitFor(t, "the pool to fill", func() bool { return p.Live() == 2 })
	first := p.Started.Load()
	for _, sb := range p.Sandboxes() {
		sb.Hang()
	}
	waitFor(t, "the hung to be replaced", func() bool { return p.Started.Load() >= first+2 && p.Live() == 2 })
}
