package runtime

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vial-run/vial/internal/proctree"
)

// TestContextPing: every driver answers a ping without touching the
// session, and calls go on after it.
func TestContextPing(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		lang       Language
		set, check string
		want       string
	}{
		{Python, "x = 41", "x + 1", "42"},
		{JavaScript, "var x = 41", "x + 1", "42"},
		{Bash, "x=41", "echo $((x + 1))", "42\n"},
	} {
		t.Run(string(tt.lang), func(t *testing.T) {
			t.Parallel()
			c := newHostContext(t, tt.lang, ContextOptions{})
			if _, err := c.Exec(t.Context(), ExecRequest{Code: tt.set}); err != nil {
				t.Fatal(err)
			}
			for range 3 {
				if err := c.Ping(t.Context()); err != nil {
					t.Fatalf("Ping: %v", err)
				}
			}
			res, err := c.Exec(t.Context(), ExecRequest{Code: tt.check})
			if err != nil {
				t.Fatal(err)
			}
			if got := res.Value + res.Stdout; got != tt.want || res.Error != nil {
				t.Errorf("after pings: %q (%+v), want %q", got, res.Error, tt.want)
			}
		})
	}
}

// TestContextPingHungDriver: a driver that does not answer (stopped)
// fails the ping at its deadline and, without a pong within the grace
// period, the context is stopped; a driver that is gone fails at once.
func TestContextPingHungDriver(t *testing.T) {
	t.Parallel()
	h := startHost(t, hostArgv(t, Python))
	c, err := NewContext(t.Context(), h, ContextOptions{Language: Python, Grace: 300 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	signalTree(h, syscall.SIGSTOP)
	defer signalTree(h, syscall.SIGCONT)
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	if err := c.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping of a stopped driver: %v, want the deadline", err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if dead, why := c.Dead(); dead {
			if !strings.Contains(why, "health check") {
				t.Errorf("dead because %q", why)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a driver that never answered a ping was not stopped")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := c.Ping(t.Context()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Ping of a dead context: %v, want ErrNotFound", err)
	}
}

// TestContextPingLateAnswer: a pong that comes after the caller gave up,
// but within the grace period, keeps the context usable.
func TestContextPingLateAnswer(t *testing.T) {
	t.Parallel()
	h := startHost(t, hostArgv(t, Python))
	c, err := NewContext(t.Context(), h, ContextOptions{Language: Python, Grace: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	signalTree(h, syscall.SIGSTOP)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	if err := c.Ping(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Ping: %v, want the deadline", err)
	}
	signalTree(h, syscall.SIGCONT)
	res, err := c.Exec(t.Context(), ExecRequest{Code: "1+1"})
	if err != nil || res.Value != "2" || res.Dead {
		t.Fatalf("call after a late pong: %+v, %v", res, err)
	}
}

func TestContextPingDeadDriver(t *testing.T) {
	t.Parallel()
	h := startHost(t, hostArgv(t, Bash))
	c, err := NewContext(t.Context(), h, ContextOptions{Language: Bash})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h.Close()
	if err := c.Ping(t.Context()); !errors.Is(err, ErrNotFound) {
		t.Errorf("Ping of an exited driver: %v, want ErrNotFound", err)
	}
}

// signalTree sends sig to the host driver and every process under it (the
// driver runs in a session of its own under the init).
func signalTree(h *hostTransport, sig syscall.Signal) {
	for _, pid := range append([]int{h.cmd.Process.Pid}, proctree.Descendants(h.cmd.Process.Pid)...) {
		syscall.Kill(pid, sig)
	}
}
