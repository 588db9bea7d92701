package policy

import (
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newTestApprovals(o ApprovalOptions) (*Approvals, *fakeClock) {
	c := &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)}
	o.Now = c.Now
	return NewApprovals(o), c
}

func TestApprovalsRedeem(t *testing.T) {
	digest := Digest("write_file", map[string]any{"path": "out.txt", "content": "hi"})
	other := Digest("write_file", map[string]any{"path": "out.txt", "content": "rm -rf"})
	tests := []struct {
		name string
		run  func(a *Approvals, c *fakeClock, token string) error
		want error
	}{
		{"accepted", func(a *Approvals, _ *fakeClock, tok string) error {
			return a.Redeem("s1", tok, digest)
		}, nil},
		{"forged", func(a *Approvals, _ *fakeClock, _ string) error {
			return a.Redeem("s1", base64.RawURLEncoding.EncodeToString(make([]byte, 32)), digest)
		}, ErrTokenUnknown},
		{"empty token", func(a *Approvals, _ *fakeClock, _ string) error {
			return a.Redeem("s1", "", digest)
		}, ErrTokenUnknown},
		{"replayed", func(a *Approvals, _ *fakeClock, tok string) error {
			if err := a.Redeem("s1", tok, digest); err != nil {
				return fmt.Errorf("first redeem: %v", err)
			}
			return a.Redeem("s1", tok, digest)
		}, ErrTokenReplayed},
		{"changed arguments", func(a *Approvals, _ *fakeClock, tok string) error {
			return a.Redeem("s1", tok, other)
		}, ErrTokenArgs},
		{"changed arguments spends the token", func(a *Approvals, _ *fakeClock, tok string) error {
			a.Redeem("s1", tok, other)
			return a.Redeem("s1", tok, digest)
		}, ErrTokenReplayed},
		{"another session", func(a *Approvals, _ *fakeClock, tok string) error {
			return a.Redeem("s2", tok, digest)
		}, ErrTokenSession},
		{"another session does not spend it", func(a *Approvals, _ *fakeClock, tok string) error {
			a.Redeem("s2", tok, digest)
			return a.Redeem("s1", tok, digest)
		}, nil},
		{"expired", func(a *Approvals, c *fakeClock, tok string) error {
			c.Advance(time.Minute)
			return a.Redeem("s1", tok, digest)
		}, ErrTokenExpired},
		{"just before expiry", func(a *Approvals, c *fakeClock, tok string) error {
			c.Advance(time.Minute - time.Nanosecond)
			return a.Redeem("s1", tok, digest)
		}, nil},
		{"expired stays refused", func(a *Approvals, c *fakeClock, tok string) error {
			c.Advance(2 * time.Minute)
			a.Redeem("s1", tok, digest)
			c.Advance(-2 * time.Minute)
			return a.Redeem("s1", tok, digest)
		}, ErrTokenReplayed},
		{"forgotten session", func(a *Approvals, _ *fakeClock, tok string) error {
			a.Forget("s1")
			return a.Redeem("s1", tok, digest)
		}, ErrTokenUnknown},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, c := newTestApprovals(ApprovalOptions{})
			tok := a.Issue("s1", digest, time.Minute)
			err := tt.run(a, c, tok)
			if tt.want == nil {
				if err != nil {
					t.Fatalf("got %v, want success", err)
				}
				return
			}
			if !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
			if !errdefs.IsPermissionDenied(err) {
				t.Errorf("%v has no ErrPermissionDenied class", err)
			}
		})
	}
}

func TestApprovalsDistinctErrors(t *testing.T) {
	errs := []error{ErrTokenUnknown, ErrTokenReplayed, ErrTokenSession, ErrTokenExpired, ErrTokenArgs}
	for i, a := range errs {
		for j, b := range errs {
			if (i == j) != errors.Is(a, b) {
				t.Errorf("errors.Is(%v, %v) = %v", a, b, errors.Is(a, b))
			}
		}
	}
}

func TestApprovalsZeroTTL(t *testing.T) {
	a, _ := newTestApprovals(ApprovalOptions{})
	tok := a.Issue("s", "d", 0)
	if err := a.Redeem("s", tok, "d"); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("ttl 0: got %v, want expired", err)
	}
}

func TestApprovalsTokens(t *testing.T) {
	a, _ := newTestApprovals(ApprovalOptions{Max: 10000, MaxPerSession: 10000})
	seen := map[string]bool{}
	for range 2000 {
		tok := a.Issue("s", "d", time.Minute)
		raw, err := base64.RawURLEncoding.DecodeString(tok)
		if err != nil || len(raw) < 16 {
			t.Fatalf("token %q: %d bytes, %v; want at least 128 bits", tok, len(raw), err)
		}
		if seen[tok] {
			t.Fatalf("token %q issued twice", tok)
		}
		seen[tok] = true
	}
}

// TestApprovalsBounded: a client that makes vial issue token after token
// cannot grow its memory, nor push another session's pending approval out.
func TestApprovalsBounded(t *testing.T) {
	a, _ := newTestApprovals(ApprovalOptions{Max: 100, MaxPerSession: 10})
	victim := a.Issue("victim", "d", time.Hour)
	first := a.Issue("flood", "d", time.Hour)
	for range 100000 {
		a.Issue("flood", "d", time.Hour)
	}
	if n := a.Len(); n > 100 {
		t.Fatalf("%d tokens held, bound is 100", n)
	}
	if err := a.Redeem("victim", victim, "d"); err != nil {
		t.Fatalf("one session's flood evicted another's approval: %v", err)
	}
	if err := a.Redeem("flood", first, "d"); !errors.Is(err, ErrTokenUnknown) {
		t.Fatalf("the flood's oldest token: got %v, want it evicted", err)
	}
	// Many sessions: the global bound holds, oldest first.
	for i := range 1000 {
		a.Issue(fmt.Sprint("s", i), "d", time.Hour)
	}
	if n := a.Len(); n > 100 {
		t.Fatalf("%d tokens held, bound is 100", n)
	}
}

// TestApprovalsEvictsSpentFirst: when full, a used or expired token goes
// before a pending one, even a newer one.
func TestApprovalsEvictsSpentFirst(t *testing.T) {
	a, c := newTestApprovals(ApprovalOptions{Max: 3, MaxPerSession: 3})
	pending := a.Issue("s", "d", time.Hour)
	short := a.Issue("s", "d", time.Second)
	used := a.Issue("s", "d", time.Hour)
	if err := a.Redeem("s", used, "d"); err != nil {
		t.Fatal(err)
	}
	a.Issue("s", "d", time.Hour) // evicts used (spent), not pending
	c.Advance(time.Minute)
	a.Issue("s", "d", time.Hour) // evicts short (expired), not pending
	if err := a.Redeem("s", pending, "d"); err != nil {
		t.Fatalf("the pending approval was evicted: %v", err)
	}
	_ = short
}

func TestApprovalsConcurrent(t *testing.T) {
	a := NewApprovals(ApprovalOptions{Max: 1 << 16, MaxPerSession: 1 << 16})
	tok := a.Issue("s", "d", time.Hour)
	var wg sync.WaitGroup
	var mu sync.Mutex
	wins := 0
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if a.Redeem("s", tok, "d") == nil {
				mu.Lock()
				wins++
				mu.Unlock()
			}
			for range 200 {
				own := a.Issue(fmt.Sprint("s", i), "x", time.Hour)
				if err := a.Redeem(fmt.Sprint("s", i), own, "x"); err != nil {
					t.Errorf("own token: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	if wins != 1 {
		t.Fatalf("a single-use token was redeemed %d times", wins)
	}
}

// FuzzRedeem: no token but the one issued is ever accepted.
func FuzzRedeem(f *testing.F) {
	f.Add("", "s", "d")
	f.Add("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "s", "d")
	f.Fuzz(func(t *testing.T, token, session, digest string) {
		a := NewApprovals(ApprovalOptions{})
		real := a.Issue(session, digest, time.Hour)
		if token == real {
			return
		}
		if err := a.Redeem(session, token, digest); !errors.Is(err, ErrTokenUnknown) {
			t.Errorf("Redeem(%q) = %v, want ErrTokenUnknown", token, err)
		}
	})
}
