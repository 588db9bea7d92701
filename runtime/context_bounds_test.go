package runtime

import (
	"bufio"
	"errors"
	"fmt"
	goruntime "runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/containerd/errdefs"
	"github.com/vial-run/vial/internal/testutil"
)

// FloodScenario is one way a process in a sandbox can abuse the driver's
// answer pipe. Exported for the sandbox tests (package runtime_test).
type FloodScenario struct {
	Name string
	// Code runs in a Python context after testutil.WireFloodPrelude (the first call
	// is the prelude, so this is call 2).
	Code string
	// Between: the flood starts after the call has ended.
	Between bool
	// Reason is text the context's death reason (or, for a flood inside
	// a call, the reason or the call's error) must hold.
	Reason string
}

// FloodScenarios are the hostile writers of issue 10 item 1.
var FloodScenarios = []FloodScenario{
	{"empty fields", `flood(b'vial1 result 2\n', b'x 0\n\n' * 4096, 0); time.sleep(60)`, false, "more than 128 fields"},
	{"giant header line", `flood(b'vial1 result 2 ', b'h' * 65536, 0); time.sleep(60)`, false, "line too long"},
	{"giant field length", `flood(b'vial1 result 2\nstdout 999999999999\n', b'y' * 65536, 0); time.sleep(60)`, false, "larger than"},
	{"never-ending field", `flood(b'vial1 result 2\nstdout 900000\n', b'y' * 65536, 0); time.sleep(60)`, false, "not followed by a newline"},
	{"fields between calls", `flood(b'vial1 result 3\n', b'x 0\n\n' * 4096, 0.5)`, true, "outside a call"},
	{"bytes between calls", `flood(b'', b'z' * 65536, 0.5)`, true, "outside a call"},
}

// FloodMaxMessage is the MaxMessage the flood tests give their contexts,
// and FloodHeapBound the growth of the Go heap (HeapInuse after a GC)
// they allow: the reader holds at most one message and a result copies
// it once, so four messages and 8 MiB of slack are generous.
const (
	FloodMaxMessage = 1 << 20
	FloodHeapBound  = 4*FloodMaxMessage + 8<<20
)

func bufioReader(s string) *bufio.Reader { return bufio.NewReader(strings.NewReader(s)) }

// heapInuse returns HeapInuse after a garbage collection.
func heapInuse() uint64 {
	goruntime.GC()
	var ms goruntime.MemStats
	goruntime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// CheckFlood runs sc on a context from start (which must apply the
// options it is given), sampling the Go heap throughout, and checks that
// the heap stays under FloodHeapBound above where it began, that the call
// or the context ends with sc.Reason, and that a new context works.
func CheckFlood(t *testing.T, sc FloodScenario, start func(ContextOptions) *Context) {
	t.Helper()
	opts := ContextOptions{MaxMessage: FloodMaxMessage, Timeout: 30 * time.Second}
	base := heapInuse()
	var (
		mu   sync.Mutex
		peak uint64
		c    *Context
		stop = make(chan struct{})
		done = make(chan struct{})
	)
	go func() {
		defer close(done)
		for {
			h := heapInuse()
			mu.Lock()
			peak = max(peak, h)
			if int64(h)-int64(base) > FloodHeapBound && c != nil {
				// Failing: stop the flood before it takes the host's memory.
				go c.Close()
			}
			mu.Unlock()
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	}()
	defer func() {
		close(stop)
		<-done
		mu.Lock()
		defer mu.Unlock()
		grew := int64(peak) - int64(base)
		t.Logf("%s: the Go heap grew by at most %.1f MiB (bound %d MiB)", sc.Name, float64(grew)/(1<<20), FloodHeapBound>>20)
		if grew > FloodHeapBound {
			t.Errorf("%s: the Go heap grew by %d bytes, over the bound of %d", sc.Name, grew, FloodHeapBound)
		}
	}()

	ctx := start(opts)
	defer ctx.Close()
	mu.Lock()
	c = ctx
	mu.Unlock()
	if res, err := c.Exec(t.Context(), ExecRequest{Code: testutil.WireFloodPrelude}); err != nil || res.Error != nil {
		t.Fatalf("prelude: %+v, %v", res, err)
	}
	res, err := c.Exec(t.Context(), ExecRequest{Code: sc.Code})
	if err != nil {
		t.Fatalf("flood call: %v", err)
	}
	if sc.Between {
		if res.Dead || res.Error != nil {
			t.Fatalf("the call that starts a later flood: %+v", res)
		}
		// The flood starts half a second later; the context must end.
		deadline := time.Now().Add(20 * time.Second)
		for dead, _ := c.Dead(); !dead && time.Now().Before(deadline); dead, _ = c.Dead() {
			time.Sleep(20 * time.Millisecond)
		}
	} else if !res.Dead || res.TimedOut {
		t.Errorf("the flooded call: %+v, want Dead (not a timeout)", res)
	}
	dead, why := c.Dead()
	if !dead || !strings.Contains(why, sc.Reason) {
		t.Errorf("context dead=%v because %q, want a reason with %q", dead, why, sc.Reason)
	}
	_, err = c.Exec(t.Context(), ExecRequest{Code: "1"})
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), sc.Reason) {
		t.Errorf("next call: %v, want a dead-context error saying %q", err, sc.Reason)
	}
	// A new context works.
	c2 := start(ContextOptions{})
	defer c2.Close()
	if res, err := c2.Exec(t.Context(), ExecRequest{Code: "6*7"}); err != nil || res.Value != "42" {
		t.Errorf("a new context after the flood: %+v, %v", res, err)
	}
}

// TestContextWireFlood runs the hostile writers against Python contexts on
// the host. Not parallel: it measures the test process's heap.
func TestContextWireFlood(t *testing.T) {
	for _, sc := range FloodScenarios {
		t.Run(sc.Name, func(t *testing.T) {
			CheckFlood(t, sc, func(o ContextOptions) *Context { return newHostContext(t, Python, o) })
		})
	}
}

func TestReadWireMsgBounds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, in string
		limit    int
		wantErr  string
	}{
		{"fits", "vial1 result 1\nstdout 3\nabc\nend\n", 32, ""},
		{"framing counted", "vial1 result 1\nstdout 3\nabc\nend\n", 31, "larger than 31"},
		{"empty fields counted", "vial1 result 1\n" + strings.Repeat("x 0\n\n", 20) + "end\n", 100, "larger than 100"},
		{"too many fields", "vial1 result 1\n" + strings.Repeat("x 0\n\n", 129) + "end\n", 1 << 20, "more than 128 fields"},
		{"long header", "vial1 result " + strings.Repeat("1", 300) + "\n", 1 << 20, "line too long"},
		{"announced length over the limit", "vial1 result 1\nstdout 2000\n", 1000, "larger than 1000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := readWireMsg(bufioReader(tt.in), tt.limit)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("got %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// TestReadWireDataGrowsWithArrivals checks that a field's announced length
// does not decide its allocation: a claim of 900 KiB followed by 10 bytes
// and the end of the stream allocates about what arrived.
func TestReadWireDataGrowsWithArrivals(t *testing.T) {
	in := "vial1 result 1\nstdout 921600\n0123456789"
	var before, after goruntime.MemStats
	goruntime.ReadMemStats(&before)
	_, err := readWireMsg(bufioReader(in), 1<<20)
	goruntime.ReadMemStats(&after)
	if err == nil {
		t.Fatal("a truncated field was accepted")
	}
	if got := after.TotalAlloc - before.TotalAlloc; got > 600<<10 {
		t.Errorf("reading 10 bytes of a field announced at 900 KiB allocated %d bytes", got)
	}
}

func TestContextQueueBound(t *testing.T) {
	t.Parallel()
	c := newHostContext(t, Python, ContextOptions{MaxQueued: 3})
	running := make(chan struct{})
	go func() {
		close(running)
		c.Exec(t.Context(), ExecRequest{Code: "import time; time.sleep(3)"})
	}()
	<-running
	// Let the first call take its turn.
	for c.Info().Busy == false {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range 3 {
		wg.Go(func() {
			_, errs[i] = c.Exec(t.Context(), ExecRequest{Code: fmt.Sprintf("%d", i)})
		})
	}
	// Wait until the three are queued.
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		c.mu.Lock()
		q := c.queued
		c.mu.Unlock()
		if q == 3 {
			break
		}
	}
	// Waiting must not spin: three waiting calls cost next to no CPU.
	var r0, r1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &r0)
	time.Sleep(300 * time.Millisecond)
	syscall.Getrusage(syscall.RUSAGE_SELF, &r1)
	t.Logf("the test process used %v of CPU in 300 ms with three calls waiting", time.Duration(r1.Utime.Nano()+r1.Stime.Nano()-r0.Utime.Nano()-r0.Stime.Nano()))

	start := time.Now()
	_, err := c.Exec(t.Context(), ExecRequest{Code: "1"})
	if !errors.Is(err, errdefs.ErrResourceExhausted) || !errdefs.IsResourceExhausted(err) || !errors.Is(err, ErrExhausted) {
		t.Fatalf("the fourth waiting call: %v, want a resource-exhausted error", err)
	}
	if !strings.Contains(err.Error(), "3 more are queued") {
		t.Errorf("the error does not say how many calls are queued: %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the refused call waited %v; it must fail at once", d)
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("queued call %d: %v", i, err)
		}
	}
}

func TestContextNoQueue(t *testing.T) {
	t.Parallel()
	c := newHostContext(t, Bash, ContextOptions{MaxQueued: -1})
	go c.Exec(t.Context(), ExecRequest{Code: "sleep 2"})
	for c.Info().Busy == false {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if _, err := c.Exec(t.Context(), ExecRequest{Code: "echo"}); !errors.Is(err, errdefs.ErrResourceExhausted) {
		t.Errorf("a call on a busy context with MaxQueued < 0: %v, want resource exhausted", err)
	}
}

func TestCapTail(t *testing.T) {
	t.Parallel()
	if got := capTail("short\xff", 100); got != "short\uFFFD" {
		t.Errorf("short: %q", got)
	}
	s := "Traceback (most recent call last):\n" + strings.Repeat("é", 50000) + "\nValueError: the end"
	got := capTail(s, 1000)
	if len(got) > 1100 || !strings.HasPrefix(got, "Traceback") || !strings.HasSuffix(got, "ValueError: the end") || !strings.Contains(got, "bytes cut") || !utf8.ValidString(got) {
		t.Errorf("cut to %d bytes: %q", len(got), got)
	}
}
