package downstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
)

func TestValidateServerName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"everything", true},
		{"git", true},
		{"my_server", true},
		{"server-filesystem", true},
		{"a1", true},
		{"A", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{strings.Repeat("a", 65), false},
		{"a__b", false},   // the separator inside
		{"a_", false},     // "a_" + "__" + "t" splits as "a" / "_t"
		{"_a", false},     // not a letter first
		{"1a", false},     // not a letter first
		{"-a", false},     // not a letter first
		{"a.b", false},    // "." is not accepted by every model API
		{"a/b", false},    // nor "/"
		{"a b", false},    // nor space
		{"sërver", false}, // ASCII only
	} {
		err := ValidateServerName(tc.name)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateServerName(%q) = %v, want ok %v", tc.name, err, tc.ok)
		}
		if err != nil && !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ValidateServerName(%q): %v is not an invalid argument", tc.name, err)
		}
	}
}

func TestOfferedName(t *testing.T) {
	for _, tc := range []struct {
		server, tool, want string
		ok                 bool
	}{
		{"everything", "echo", "everything__echo", true},
		{"everything", "get-sum", "everything__get-sum", true},
		{"fs", "read_file", "fs__read_file", true},
		{"fs", "files.read", "fs__files_read", true},
		{"fs", "a/b c", "fs__a_b_c", true},
		{"fs", "_x", "fs___x", true},
		{"fs", "", "", false},
		{"fs", strings.Repeat("t", 124), "fs__" + strings.Repeat("t", 124), true},
		{"fs", strings.Repeat("t", 125), "", false},
	} {
		got, ok := offeredName(tc.server, tc.tool)
		if got != tc.want || ok != tc.ok {
			t.Errorf("offeredName(%q, %q) = %q, %v; want %q, %v", tc.server, tc.tool, got, ok, tc.want, tc.ok)
		}
		if ok {
			// Every offered name is MCP-valid and valid for Claude's API.
			for _, c := range []byte(got) {
				if !isNameChar(c) {
					t.Errorf("offered name %q has %q", got, c)
				}
			}
			// And splits back at the server's name.
			if srv, _, _ := SplitName(got); srv != tc.server {
				t.Errorf("SplitName(%q) = %q, want %q", got, srv, tc.server)
			}
		}
	}
}

func TestBackoffIsBoundedWithJitter(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 50 {
		d := backoff(1)
		if d < firstBackoff/2 || d > firstBackoff {
			t.Fatalf("backoff(1) = %s", d)
		}
		seen[d] = true
	}
	if len(seen) < 10 {
		t.Errorf("backoff(1) has little jitter: %d distinct values in 50", len(seen))
	}
	for n := 2; n < 100; n++ {
		if d := backoff(n); d > maxBackoff || d < min(firstBackoff<<(n-1), maxBackoff)/2 {
			t.Errorf("backoff(%d) = %s", n, d)
		}
	}
}

// countingReader serves n bytes of b (no newline) and counts what was read.
type countingReader struct {
	left int64
	read atomic.Int64
}

func (r *countingReader) Read(p []byte) (int, error) {
	if r.left <= 0 {
		return 0, io.EOF
	}
	n := min(int64(len(p)), r.left)
	for i := range p[:n] {
		p[i] = 'x'
	}
	r.left -= n
	r.read.Add(n)
	return int(n), nil
}

// A line without end is not buffered past the bound: the framer stops
// reading and says why.
func TestFramerBoundsLines(t *testing.T) {
	src := &countingReader{left: 1 << 30}
	f, out := newFramer(src, 1<<20)
	go io.Copy(io.Discard, out)
	select {
	case <-f.done:
	case <-time.After(10 * time.Second):
		t.Fatal("framer still reading")
	}
	if n := src.read.Load(); n > 2<<20 {
		t.Errorf("read %d bytes of an endless line with a bound of 1 MiB", n)
	}
	if _, _, end := f.stats(); !errors.Is(end, errdefs.ErrResourceExhausted) {
		t.Errorf("end: %v", end)
	}
}

func TestFramerDropsGarbage(t *testing.T) {
	in := "hello\n\n{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n[1,2]\n{broken\n{\"jsonrpc\":\"2.0\",\"method\":\"x\"}"
	f, out := newFramer(strings.NewReader(in), 1<<20)
	got, _ := io.ReadAll(out)
	want := "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n{\"jsonrpc\":\"2.0\",\"method\":\"x\"}\n"
	if string(got) != want {
		t.Errorf("passed on %q, want %q", got, want)
	}
	<-f.done
	n, first, end := f.stats()
	if n != 3 || first != "hello" || end != nil {
		t.Errorf("stats: %d %q %v", n, first, end)
	}
}

// blockedWriter never returns from Write until released.
type blockedWriter struct{ release chan struct{} }

func (b *blockedWriter) Write(p []byte) (int, error) { <-b.release; return len(p), nil }
func (b *blockedWriter) Close() error                { return nil }

// A server that does not read cannot block a request: writes queue up to
// the bound, then fail at once.
func TestQueueWriterDoesNotBlock(t *testing.T) {
	dst := &blockedWriter{release: make(chan struct{})}
	defer close(dst.release)
	q := newQueueWriter(dst, 1<<20)
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	done := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			if _, err := q.Write(chunk); err != nil {
				done <- err
				return
			}
			if i > 100 {
				done <- nil
				return
			}
		}
	}()
	select {
	case err := <-done:
		if !errors.Is(err, errNotReading) {
			t.Errorf("write to a server that does not read: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Write blocked")
	}
}

func TestLimitBody(t *testing.T) {
	read := func(events bool, body string, max int64) error {
		b := &limitBody{rc: io.NopCloser(strings.NewReader(body)), max: max, events: events}
		_, err := io.Copy(io.Discard, b)
		return err
	}
	if err := read(false, strings.Repeat("x", 100), 100); err != nil {
		t.Errorf("at the bound: %v", err)
	}
	if err := read(false, strings.Repeat("x", 101), 100); !errors.Is(err, errTooLarge) {
		t.Errorf("over the bound: %v", err)
	}
	// An event stream is bounded per event, not in all.
	ev := "data: " + strings.Repeat("x", 80) + "\n\n"
	if err := read(true, strings.Repeat(ev, 100), 100); err != nil {
		t.Errorf("many small events: %v", err)
	}
	if err := read(true, "data: "+strings.Repeat("x", 200)+"\n\n", 100); !errors.Is(err, errTooLarge) {
		t.Errorf("one big event: %v", err)
	}
}

func TestFinishResultBudget(t *testing.T) {
	const budget = 16 << 10
	size := func(r *mcpgo.CallToolResult) int {
		b, _ := json.Marshal(r)
		return len(b)
	}
	t.Run("fits", func(t *testing.T) {
		in := mcpgo.NewToolResultText("small")
		out, err := finishResult(in, "s", "s__t", false, budget, nil)
		if err != nil || len(out.Content) != 1 || out.Content[0].(mcpgo.TextContent).Text != "small" {
			t.Errorf("%v %+v", err, out)
		}
	})
	t.Run("long text", func(t *testing.T) {
		long := strings.Repeat("é<", 100<<10)
		in := mcpgo.NewToolResultText(long)
		out, err := finishResult(in, "s", "s__t", false, budget, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n := size(out); n > budget+256 {
			t.Errorf("%d bytes for a budget of %d", n, budget)
		}
		last := out.Content[len(out.Content)-1].(mcpgo.TextContent).Text
		if !strings.Contains(last, "cut to fit vial's response budget of 16.0 KiB") || !strings.Contains(last, "a text item was shortened") {
			t.Errorf("notice: %q", last)
		}
		if cut := out.Content[0].(mcpgo.TextContent).Text; cut == "" || !strings.HasPrefix(long, cut) {
			t.Errorf("cut text (%d bytes) is not a prefix of the text", len(cut))
		}
	})
	t.Run("many items", func(t *testing.T) {
		in := &mcpgo.CallToolResult{}
		for range 100000 {
			in.Content = append(in.Content, mcpgo.NewTextContent(""))
		}
		out, err := finishResult(in, "s", "s__t", false, budget, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n := size(out); n > budget+256 {
			t.Errorf("%d bytes for a budget of %d", n, budget)
		}
	})
	t.Run("structured dropped", func(t *testing.T) {
		big := map[string]any{"rows": strings.Repeat("r", 64<<10)}
		for _, schema := range []bool{false, true} {
			in := mcpgo.NewToolResultStructured(big, "fallback")
			out, err := finishResult(in, "s", "s__t", schema, budget, nil)
			if err != nil {
				t.Fatal(err)
			}
			if out.StructuredContent != nil || len(out.RawStructuredContent) != 0 {
				t.Error("structured content kept over budget")
			}
			if out.IsError != schema {
				t.Errorf("with an output schema %v: isError %v", schema, out.IsError)
			}
			if n := size(out); n > budget+256 {
				t.Errorf("%d bytes for a budget of %d", n, budget)
			}
		}
	})
	t.Run("secret", func(t *testing.T) {
		in := mcpgo.NewToolResultStructured(map[string]any{"k": "tok-123", "tok-123": 1}, "has tok-123")
		in.Meta = &mcpgo.Meta{AdditionalFields: map[string]any{"x": "tok-123"}}
		out, err := finishResult(in, "s", "s__t", false, budget, newRedactor("tok-123"))
		if err != nil {
			t.Fatal(err)
		}
		if b, _ := json.Marshal(out); strings.Contains(string(b), "tok-123") || !strings.Contains(string(b), redactedMark) {
			t.Errorf("result: %s", b)
		}
	})
}

func TestRedactingLogHandler(t *testing.T) {
	var buf bytes.Buffer
	h := &redactHandler{next: slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), red: newRedactor("s3cr3t"), max: slog.LevelDebug}
	log := slog.New(h).With("pre", "s3cr3t")
	log.Error("sent s3cr3t", "err", errors.New("bad s3cr3t"), "group", slog.GroupValue(slog.String("k", "s3cr3t")), "n", 3)
	out := buf.String()
	if strings.Contains(out, "s3cr3t") {
		t.Errorf("log shows the secret: %s", out)
	}
	if !strings.Contains(out, "level=DEBUG") || !strings.Contains(out, "n=3") {
		t.Errorf("log: %s", out)
	}
}

func TestURLSecretsAreRedacted(t *testing.T) {
	red := newRedactor(urlSecrets("https://user:pw-123@example.com/mcp?key=k-456&x=1", "tok-789")...)
	msg := red.replace(`Post "https://user:pw-123@example.com/mcp?key=k-456&x=1": EOF; Bearer tok-789`)
	for _, s := range []string{"pw-123", "k-456", "tok-789"} {
		if strings.Contains(msg, s) {
			t.Errorf("%q shows %q", msg, s)
		}
	}
	if got := safeURL("https://user:pw-123@example.com/mcp?key=k-456"); got != "https://example.com/mcp" {
		t.Errorf("safeURL: %s", got)
	}
}
