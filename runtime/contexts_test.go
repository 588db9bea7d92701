package runtime

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// hostStarter starts real drivers as host processes and counts them.
type hostStarter struct {
	t       *testing.T
	started atomic.Int32
	fail    error
}

func (h *hostStarter) start(ctx context.Context, lang Language, env string) (Transport, string, error) {
	if h.fail != nil {
		return nil, "", h.fail
	}
	h.started.Add(1)
	tr := startHost(h.t, hostArgv(h.t, lang))
	return tr, tr.cmd.Dir, nil
}

func newManager(t *testing.T, o ManagerOptions) (*ContextManager, *hostStarter) {
	t.Helper()
	hs := &hostStarter{t: t}
	if o.Start == nil {
		o.Start = hs.start
	}
	m, err := NewContextManager(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.CloseAll(); err != nil {
			t.Error(err)
		}
	})
	return m, hs
}

func TestManagerCreateGetStop(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t, ManagerOptions{})
	c, err := m.Create(t.Context(), CreateOptions{Language: Python, Name: "analysis"})
	if err != nil {
		t.Fatal(err)
	}
	if !ValidContextID(c.ID()) || c.Workspace() == "" {
		t.Errorf("ID %q, workspace %q", c.ID(), c.Workspace())
	}
	if _, err := m.Create(t.Context(), CreateOptions{Language: Bash, Name: "analysis"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("duplicate name: %v, want ErrInvalid", err)
	}
	if _, err := m.Create(t.Context(), CreateOptions{Language: "cobol"}); !errors.Is(err, ErrInvalid) {
		t.Errorf("bad language: %v, want ErrInvalid", err)
	}
	got, err := m.Get(c.ID())
	if err != nil || got != c {
		t.Fatalf("Get: %v, %v", got, err)
	}
	res, err := got.Exec(t.Context(), ExecRequest{Code: "1+1"})
	if err != nil || res.Value != "2" {
		t.Fatalf("Exec: %+v, %v", res, err)
	}
	infos := m.List()
	want := []ContextInfo{{ID: c.ID(), Name: "analysis", Language: Python}}
	if diff := cmp.Diff(want, infos, cmp.FilterPath(func(p cmp.Path) bool {
		f := p.Last().String()
		return f == ".Created" || f == ".LastUsed" || f == ".Version"
	}, cmp.Ignore())); diff != "" {
		t.Errorf("List (-want +got):\n%s", diff)
	}
	if err := m.Stop(c.ID()); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Get(c.ID()); !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "stopped") {
		t.Errorf("Get after Stop: %v", err)
	}
	if err := m.Stop(c.ID()); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Stop: %v", err)
	}
	if _, err := m.Get("../../etc"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get of a hostile ID: %v", err)
	}
	if _, err := c.Exec(t.Context(), ExecRequest{Code: "1"}); !errors.Is(err, ErrNotFound) {
		t.Errorf("Exec on a stopped context: %v", err)
	}
}

func TestManagerLimit(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t, ManagerOptions{MaxContexts: 2})
	var cs []*Context
	for range 2 {
		c, err := m.Create(t.Context(), CreateOptions{Language: Bash})
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	_, err := m.Create(t.Context(), CreateOptions{Language: Bash})
	if !errors.Is(err, ErrExhausted) || !strings.Contains(err.Error(), "maximum is 2") {
		t.Fatalf("third context: %v, want ErrExhausted naming the limit", err)
	}
	if _, err := m.Default(t.Context(), Python, ""); !errors.Is(err, ErrExhausted) {
		t.Errorf("default context past the limit: %v", err)
	}
	// A dead context frees its slot.
	if res, _ := cs[0].Exec(t.Context(), ExecRequest{Code: "builtin exit 1"}); !res.Dead {
		t.Fatalf("want the context dead, got %+v", res)
	}
	if _, err := m.Create(t.Context(), CreateOptions{Language: Bash}); err != nil {
		t.Errorf("after a death: %v", err)
	}
}

func TestManagerConcurrentCreateRespectsLimit(t *testing.T) {
	t.Parallel()
	m, hs := newManager(t, ManagerOptions{MaxContexts: 3})
	var wg sync.WaitGroup
	var ok, exhausted atomic.Int32
	for range 8 {
		wg.Go(func() {
			_, err := m.Create(t.Context(), CreateOptions{Language: Bash})
			switch {
			case err == nil:
				ok.Add(1)
			case errors.Is(err, ErrExhausted):
				exhausted.Add(1)
			default:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if ok.Load() != 3 || exhausted.Load() != 5 || hs.started.Load() != 3 {
		t.Errorf("created %d, refused %d, started %d; want 3, 5, 3", ok.Load(), exhausted.Load(), hs.started.Load())
	}
}

func TestManagerDefault(t *testing.T) {
	t.Parallel()
	m, hs := newManager(t, ManagerOptions{})
	var wg sync.WaitGroup
	got := make([]*Context, 6)
	for i := range got {
		wg.Go(func() {
			c, err := m.Default(t.Context(), Python, "")
			if err != nil {
				t.Error(err)
			}
			got[i] = c
		})
	}
	wg.Wait()
	if hs.started.Load() != 1 {
		t.Fatalf("started %d sandboxes for one default context", hs.started.Load())
	}
	for _, c := range got {
		if c != got[0] {
			t.Fatal("callers got different default contexts")
		}
	}
	if _, err := got[0].Exec(t.Context(), ExecRequest{Code: "x = 7"}); err != nil {
		t.Fatal(err)
	}
	again, _ := m.Default(t.Context(), Python, "")
	if res, _ := again.Exec(t.Context(), ExecRequest{Code: "x"}); res.Value != "7" {
		t.Errorf("default context lost its state: %+v", res)
	}
	if info := again.Info(); info.Name != "default-python" {
		t.Errorf("name %q", info.Name)
	}
	// A dead default is replaced.
	if res, _ := again.Exec(t.Context(), ExecRequest{Code: "import os; os._exit(1)"}); !res.Dead {
		t.Fatalf("want dead, got %+v", res)
	}
	fresh, err := m.Default(t.Context(), Python, "")
	if err != nil || fresh == again {
		t.Fatalf("after death: %v, same=%v", err, fresh == again)
	}
	other, _ := m.Default(t.Context(), Bash, "")
	if other == fresh || other.Language() != Bash {
		t.Error("the bash default is not its own context")
	}
}

func TestManagerIdleAndLifetime(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		opts ManagerOptions
		use  bool // keep using the context
		want string
	}{
		{"idle", ManagerOptions{IdleTimeout: 300 * time.Millisecond, MaxLifetime: -1}, false, "idle"},
		{"lifetime", ManagerOptions{IdleTimeout: -1, MaxLifetime: 600 * time.Millisecond}, true, "maximum lifetime"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tt.opts.JanitorInterval = 50 * time.Millisecond
			m, _ := newManager(t, tt.opts)
			c, err := m.Create(t.Context(), CreateOptions{Language: Bash})
			if err != nil {
				t.Fatal(err)
			}
			deadline := time.Now().Add(10 * time.Second)
			for time.Now().Before(deadline) {
				if tt.use {
					_, _ = c.Exec(t.Context(), ExecRequest{Code: "true"})
				}
				if _, err := m.Get(c.ID()); err != nil {
					if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), tt.want) {
						t.Fatalf("got %v, want ErrNotFound saying %q", err, tt.want)
					}
					if dead, _ := c.Dead(); !dead {
						t.Error("the expired context still runs")
					}
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
			t.Fatal("the context never expired")
		})
	}
}

func TestManagerIdleSparesBusy(t *testing.T) {
	t.Parallel()
	m, _ := newManager(t, ManagerOptions{IdleTimeout: 200 * time.Millisecond, JanitorInterval: 50 * time.Millisecond})
	c, err := m.Create(t.Context(), CreateOptions{Language: Python})
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.Exec(t.Context(), ExecRequest{Code: "import time; time.sleep(0.6); 'done'"})
	if err != nil || res.Value != "'done'" || res.Dead {
		t.Errorf("a running call was expired: %+v, %v", res, err)
	}
}

func TestManagerStartFailure(t *testing.T) {
	t.Parallel()
	m, hs := newManager(t, ManagerOptions{MaxContexts: 1})
	hs.fail = fmt.Errorf("runc: exec format error")
	_, err := m.Create(t.Context(), CreateOptions{Language: Python})
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("got %v, want ErrUnavailable", err)
	}
	hs.fail = nil
	// The failed start released its slot.
	if _, err := m.Create(t.Context(), CreateOptions{Language: Bash}); err != nil {
		t.Error(err)
	}
}

func TestManagerCloseAll(t *testing.T) {
	t.Parallel()
	hs := &hostStarter{t: t}
	m, err := NewContextManager(ManagerOptions{Start: hs.start})
	if err != nil {
		t.Fatal(err)
	}
	var cs []*Context
	for _, lang := range allLanguages {
		c, err := m.Create(t.Context(), CreateOptions{Language: lang})
		if err != nil {
			t.Fatal(err)
		}
		cs = append(cs, c)
	}
	if err := m.CloseAll(); err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		select {
		case <-c.t.Done():
		default:
			t.Errorf("%s context still running", c.Language())
		}
	}
	if _, err := m.Create(t.Context(), CreateOptions{Language: Bash}); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Create after CloseAll: %v", err)
	}
	if err := m.CloseAll(); err != nil {
		t.Errorf("second CloseAll: %v", err)
	}
}

func TestNewContextManagerNeedsStart(t *testing.T) {
	if _, err := NewContextManager(ManagerOptions{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("got %v, want ErrInvalid", err)
	}
}

func TestParseLanguage(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Language
		ok   bool
	}{{"python", Python, true}, {"js", JavaScript, true}, {"shell", Bash, true}, {"ruby", "", false}} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLanguage(tt.in)
			if got != tt.want || (err == nil) != tt.ok {
				t.Errorf("ParseLanguage(%q) = %q, %v", tt.in, got, err)
			}
		})
	}
}

// BenchmarkContextExec measures a warm call's round trip over the
// host-process transport (the driver's overhead, without a sandbox).
func BenchmarkContextExec(b *testing.B) {
	for _, tt := range []struct {
		lang Language
		code string
	}{{Python, "1+1"}, {JavaScript, "1+1"}, {Bash, "true"}} {
		b.Run(string(tt.lang), func(b *testing.B) {
			c := newHostContext(b, tt.lang, ContextOptions{})
			durs := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t0 := time.Now()
				if _, err := c.Exec(context.Background(), ExecRequest{Code: tt.code}); err != nil {
					b.Fatal(err)
				}
				durs = append(durs, time.Since(t0))
			}
			slices.Sort(durs)
			b.ReportMetric(float64(durs[len(durs)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(durs[len(durs)*99/100].Microseconds()), "p99-µs")
		})
	}
}
