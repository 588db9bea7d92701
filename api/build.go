package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/internal/lazyre"
)

// Bounds of image builds: one at a time (a build takes a core and a
// network for minutes), and a bounded log, so that a chatty build cannot
// grow the server's memory.
const (
	// MaxBuildLines is how many progress lines a build keeps; older ones
	// are dropped (and the stream says how many).
	MaxBuildLines = 2000
	// MaxBuildLineBytes cuts a longer progress line.
	MaxBuildLineBytes = 4 << 10
)

var debPackageRE = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9.+_-]{0,127}$`)

// build is one image build and its log.
type build struct {
	ID      string
	Request BuildRequest
	Started time.Time

	mu       sync.Mutex
	lines    []string // the last MaxBuildLines
	dropped  int      // lines dropped from the front
	partial  []byte   // an unfinished line
	state    string   // running, succeeded, failed, canceled
	image    *Image
	err      string
	ended    time.Time
	changed  chan struct{} // closed and replaced on every change
	cancel   context.CancelFunc
	finished chan struct{}
}

// buildStatus is a build as GET shows it.
type buildStatus struct {
	ID      string       `json:"id"`
	Request BuildRequest `json:"request"`
	State   string       `json:"state"`
	Started time.Time    `json:"started"`
	Ended   *time.Time   `json:"ended,omitempty"`
	Image   *Image       `json:"image,omitempty"`
	Error   string       `json:"error,omitempty"`
	Lines   int          `json:"lines"`
}

func (b *build) status() buildStatus {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := buildStatus{ID: b.ID, Request: b.Request, State: b.state, Started: b.Started, Image: b.image, Error: b.err, Lines: b.dropped + len(b.lines)}
	if !b.ended.IsZero() {
		e := b.ended
		s.Ended = &e
	}
	return s
}

// Write collects progress: whole lines (split at \n and \r, which
// progress bars use), each cut to MaxBuildLineBytes.
func (b *build) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexAny(p, "\r\n")
		if i < 0 {
			room := MaxBuildLineBytes - len(b.partial)
			b.partial = append(b.partial, p[:max(0, min(len(p), room))]...)
			break
		}
		room := MaxBuildLineBytes - len(b.partial)
		b.partial = append(b.partial, p[:max(0, min(i, room))]...)
		b.addLocked(string(b.partial))
		b.partial = b.partial[:0]
		p = p[i+1:]
	}
	return n, nil
}

func (b *build) addLocked(line string) {
	line = strings.ToValidUTF8(line, "\uFFFD")
	if strings.TrimSpace(line) == "" {
		return
	}
	b.lines = append(b.lines, line)
	if over := len(b.lines) - MaxBuildLines; over > 0 {
		b.lines = append(b.lines[:0:0], b.lines[over:]...)
		b.dropped += over
	}
	b.notifyLocked()
}

func (b *build) notifyLocked() {
	close(b.changed)
	b.changed = make(chan struct{})
}

// since returns the lines from index i on (counting dropped ones), how
// many before it were dropped, whether the build has ended, and a channel
// closed at the next change.
func (b *build) since(i int) (lines []string, next, skipped int, done bool, changed <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if i < b.dropped {
		skipped = b.dropped - i
		i = b.dropped
	}
	lines = append(lines, b.lines[i-b.dropped:]...)
	return lines, b.dropped + len(b.lines), skipped, b.state != "running", b.changed
}

// builds runs at most one build at a time and remembers the last one.
type builds struct {
	builder ImageBuilder
	base    context.Context
	mu      sync.Mutex
	last    *build
}

func (bs *builds) start(req BuildRequest) (*build, error) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.last != nil && bs.last.status().State == "running" {
		return nil, fmt.Errorf("build %s is still running; wait for it or cancel it (DELETE /api/v1/images/builds/%s): %w", bs.last.ID, bs.last.ID, errdefs.ErrConflict)
	}
	var raw [8]byte
	rand.Read(raw[:])
	ctx, cancel := context.WithCancel(bs.base)
	b := &build{ID: "b-" + hex.EncodeToString(raw[:]), Request: req, Started: time.Now(), state: "running",
		changed: make(chan struct{}), cancel: cancel, finished: make(chan struct{})}
	bs.last = b
	go func() {
		defer close(b.finished)
		defer cancel()
		img, err := bs.builder.Build(ctx, req, b)
		b.mu.Lock()
		defer b.mu.Unlock()
		if len(b.partial) > 0 {
			b.addLocked(string(b.partial))
			b.partial = nil
		}
		b.ended = time.Now()
		switch {
		case err == nil:
			b.state, b.image = "succeeded", img
		case ctx.Err() != nil:
			b.state, b.err = "canceled", "the build was canceled"
		default:
			b.state, b.err = "failed", err.Error()
		}
		b.notifyLocked()
	}()
	return b, nil
}

func (bs *builds) lastBuild() *build {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return bs.last
}

func (bs *builds) get(id string) (*build, error) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.last == nil || bs.last.ID != id {
		return nil, fmt.Errorf("no build %s (only the last build is kept): %w", id, errdefs.ErrNotFound)
	}
	return bs.last, nil
}

// checkBuildRequest validates a build request before anything runs.
func (a *API) checkBuildRequest(req BuildRequest) error {
	if req.Recipe == "" && req.Environment == "" && req.Agent == "" {
		return invalidf("name a recipe (%s), an environment or an agent", strings.Join(a.images.Recipes(), ", "))
	}
	if req.Environment != "" && req.Agent != "" {
		return invalidf("environment and agent exclude each other")
	}
	if req.Recipe != "" {
		known := false
		for _, r := range a.images.Recipes() {
			known = known || r == req.Recipe
		}
		if !known {
			return invalidf("unknown recipe %q (valid: %s)", cut(req.Recipe), strings.Join(a.images.Recipes(), ", "))
		}
	}
	if req.Environment != "" {
		if err := checkName("environment", req.Environment); err != nil {
			return err
		}
	}
	if req.Agent != "" {
		if err := checkName("agent", req.Agent); err != nil {
			return err
		}
	}
	if req.Name != "" && (len(req.Name) > 128 || strings.ContainsAny(req.Name, "/\\\x00 ") || strings.Contains(req.Name, "..")) {
		return invalidf("image name %q is not valid (e.g. python, tools:1)", cut(req.Name))
	}
	if len(req.Packages) > 256 {
		return invalidf("%d packages: at most 256", len(req.Packages))
	}
	for _, p := range req.Packages {
		if !debPackageRE.MatchString(p) {
			return invalidf("package %q is not a package name", cut(p))
		}
	}
	return nil
}

func cut(s string) string {
	if len(s) > 64 {
		return s[:64] + "..."
	}
	return s
}

// streamBuild sends a build's progress as server-sent events: "progress"
// for each line (its data the line), "skipped" when lines were dropped
// before the client read them, and one "end" with the build's status as
// JSON. A comment every 15 s keeps proxies from closing an idle stream.
// It returns when the build has ended and every line was sent, or the
// client went away (the build goes on).
func streamBuild(w http.ResponseWriter, r *http.Request, b *build) {
	w.Header().Set("Content-Type", "text/event-stream; charset=utf-8")
	w.Header().Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	send := func(event, data string) {
		fmt.Fprintf(w, "event: %s\n", event)
		for _, l := range strings.Split(data, "\n") {
			fmt.Fprintf(w, "data: %s\n", l)
		}
		fmt.Fprint(w, "\n")
	}
	keepAlive := time.NewTicker(15 * time.Second)
	defer keepAlive.Stop()
	next := 0
	for {
		lines, n, skipped, done, changed := b.since(next)
		if skipped > 0 {
			send("skipped", fmt.Sprintf("%d earlier lines are no longer kept", skipped))
		}
		for _, l := range lines {
			send("progress", l)
		}
		next = n
		if done {
			st, _ := json.Marshal(b.status())
			send("end", string(st))
			rc.Flush()
			return
		}
		if err := rc.Flush(); err != nil {
			return
		}
		select {
		case <-changed:
		case <-keepAlive.C:
			fmt.Fprint(w, ": still building\n\n")
		case <-r.Context().Done():
			return
		}
	}
}
