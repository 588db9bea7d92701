package downstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	mcptransport "github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/vial-run/vial/internal/human"
)

// State is where a server's connection stands.
type State string

const (
	StateDisabled   State = "disabled"   // configured off; never connected
	StateIdle       State = "idle"       // not connected yet (auto_start off and not used)
	StateConnecting State = "connecting" // a connect is under way
	StateConnected  State = "connected"  // initialized; requests go to it
	StateFailed     State = "failed"     // the last connect failed, or the server went away
	StateClosed     State = "closed"     // the Manager was closed
)

// server is one configured server and its connection. Its fields after mu
// are guarded by mu.
type server struct {
	m      *Manager
	cfg    Server
	log    *slog.Logger // vial's log, redacting
	libLog *slog.Logger // for mcp-go: redacting, at debug level
	red    *redactor

	mu        sync.Mutex
	state     State
	since     time.Time
	cur       *conn
	dialing   *flight
	lastErr   *Error
	lastErrAt time.Time
	connects  int
	failures  int // consecutive: connect failures and crashes, reset by a successful request
	retryAt   time.Time
	info      mcpgo.Implementation
	proto     string

	tools    map[string]remoteTool // by offered name
	skipped  []string
	listed   bool      // tools holds a listing
	listedAt time.Time // zero: stale
	listing  *flight
	listGen  uint64 // listings started
	watching bool   // a goroutine refreshes after list_changed
	dirty    bool
}

// flight is one connect or listing that concurrent users wait for.
type flight struct {
	done chan struct{}
	gen  uint64 // listings: the how-manieth
	conn *conn
	err  *Error
}

// remoteTool is one tool as vial offers it.
type remoteTool struct {
	remote    string
	def       mcpgo.Tool
	hasOutput bool
	digest    string // the definition's JSON, to see changes
}

func (s *server) setState(st State) {
	if s.state != st {
		s.state, s.since = st, time.Now()
	}
}

func (s *server) errorf(op, detail string, class ...error) *Error {
	return newError(s.cfg.Name, op, s.red, detail, class...)
}

// fail records err as the server's last error (s.mu held).
func (s *server) fail(err *Error) {
	s.lastErr, s.lastErrAt = err, time.Now()
}

// backoff is the wait after n consecutive failures: 0.5 s doubling to 30 s,
// each drawn from its upper half so that servers that failed together do
// not come back together.
func backoff(n int) time.Duration {
	if n <= 0 {
		return 0
	}
	d := maxBackoff
	if n < 8 {
		d = min(firstBackoff<<(n-1), maxBackoff)
	}
	return d/2 + rand.N(d/2+1)
}

// connection returns the live connection, connecting first if there is
// none. Connects are shared: concurrent users wait for the same one, which
// runs under the Manager's lifetime and ConnectionTimeout, not under a
// caller's context, so one impatient caller does not abort it for the
// others. After a failure the server is not tried again until its
// back-off has passed: a use within a second of that waits for it, a
// later one gets the last error at once.
func (s *server) connection(ctx context.Context) (*conn, error) {
	for {
		s.mu.Lock()
		if s.m.isClosed() {
			s.mu.Unlock()
			return nil, s.errorf("connecting", "vial is shutting down", errdefs.ErrUnavailable)
		}
		if s.cfg.Disabled {
			s.mu.Unlock()
			return nil, s.errorf("connecting", "the server is disabled in the configuration", errdefs.ErrFailedPrecondition)
		}
		if c := s.cur; c != nil {
			s.mu.Unlock()
			return c, nil
		}
		if d := s.dialing; d != nil {
			s.mu.Unlock()
			select {
			case <-d.done:
				if d.err != nil {
					return nil, d.err
				}
				continue
			case <-ctx.Done():
				return nil, s.errorf("connecting", "gave up waiting: "+ctx.Err().Error(), errdefs.ErrUnavailable, ctx.Err())
			}
		}
		if wait := time.Until(s.retryAt); wait > 0 {
			last := s.lastErr
			s.mu.Unlock()
			if wait > waitBackoffAtMost {
				detail := "not tried again yet"
				if last != nil {
					detail = last.Detail()
				}
				return nil, s.errorf("connecting", fmt.Sprintf("%s (next attempt in %s)", detail, wait.Round(100*time.Millisecond)), errdefs.ErrUnavailable)
			}
			select {
			case <-time.After(wait):
				continue
			case <-ctx.Done():
				return nil, s.errorf("connecting", "gave up waiting: "+ctx.Err().Error(), errdefs.ErrUnavailable, ctx.Err())
			}
		}
		d := &flight{done: make(chan struct{})}
		s.dialing = d
		s.setState(StateConnecting)
		s.mu.Unlock()
		go s.dial(d)
	}
}

// dial connects, retrying transient failures up to MaxRetries times within
// ConnectionTimeout, and publishes the outcome in d.
func (s *server) dial(d *flight) {
	timeout := s.cfg.Settings.ConnectionTimeout
	ctx, cancel := withTimeout(s.m.life, timeout)
	defer cancel()
	began := time.Now()
	var c *conn
	var err *Error
	for attempt := 0; ; attempt++ {
		var retry bool
		c, err, retry = s.dialOnce(ctx)
		if err == nil || !retry || attempt >= s.cfg.Settings.MaxRetries || ctx.Err() != nil {
			break
		}
		wait := min(100*time.Millisecond<<attempt, 2*time.Second)
		wait = wait/2 + rand.N(wait/2+1)
		s.log.Info("connect failed; trying again", "attempt", attempt+1, "of", s.cfg.Settings.MaxRetries+1, "in", wait.Round(time.Millisecond), "error", err.Detail())
		select {
		case <-time.After(wait):
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	if err == nil && s.m.isClosed() {
		// Close may be waiting for this connect: end what it made first.
		c.close()
		c, err = nil, s.errorf("connecting", "vial is shutting down", errdefs.ErrUnavailable)
	}
	if err == nil && c.isLost() {
		why, cls := "the connection ended", []error{errdefs.ErrUnavailable}
		if c.stdio {
			why, cls = s.endReason(c)
		}
		c.close()
		c, err = nil, s.errorf("connecting", "the server went away right after initialize: "+why, cls...)
	}
	s.mu.Lock()
	s.dialing = nil
	if err == nil {
		s.cur = c
		if c.isLost() {
			// Lost since the check above: connLost found it was not
			// the current connection yet and left it to us.
			s.cur = nil
			go c.close()
			c, err = nil, s.errorf("connecting", "the server went away right after initialize", errdefs.ErrUnavailable)
		}
	}
	if err != nil {
		s.failures++
		wait := backoff(s.failures)
		s.retryAt = time.Now().Add(wait)
		s.fail(err)
		s.setState(StateFailed)
		failures := s.failures
		s.mu.Unlock()
		s.log.Warn("cannot connect", "error", err.Detail(), "failures", failures, "retry_in", wait.Round(100*time.Millisecond))
	} else {
		s.connects++
		s.info, s.proto = c.info, c.proto
		s.setState(StateConnected)
		restarts := s.connects - 1
		s.mu.Unlock()
		s.log.Info("connected", "transport", string(s.cfg.Transport), "sandboxed", s.cfg.Sandboxed,
			"server_name", c.info.Name, "server_version", c.info.Version, "protocol", c.proto,
			"restarts", restarts, "took", time.Since(began).Round(time.Millisecond))
	}
	d.conn, d.err = c, err
	close(d.done)
}

// connLost is called when c is known to be dead: its process ended, its
// output broke, or an HTTP request failed below MCP. The server is then
// failed with the reason, backs off, and reconnects on its next use.
func (s *server) connLost(c *conn) {
	if !c.markLost() && !s.isCurrent(c) {
		return
	}
	why, cls := "the connection ended", []error{errdefs.ErrUnavailable}
	if c.stdio {
		why, cls = s.endReason(c)
	}
	s.mu.Lock()
	current := s.cur == c
	failures := s.failures
	if current {
		s.cur = nil
		if !s.m.isClosed() {
			s.failures++
			failures = s.failures
			s.retryAt = time.Now().Add(backoff(s.failures))
			s.fail(s.errorf("serving", "the server went away: "+why, cls...))
			s.setState(StateFailed)
		}
	}
	s.mu.Unlock()
	if current && !s.m.isClosed() {
		s.log.Warn("server went away; it is restarted on next use", "reason", why, "failures", failures)
	}
	go c.close()
}

// drop forgets c without counting a failure (an HTTP session that the
// server ended).
func (s *server) drop(c *conn) {
	s.mu.Lock()
	if s.cur == c {
		s.cur = nil
		s.setState(StateIdle)
	}
	s.mu.Unlock()
	c.markLost()
	go c.close()
}

func (s *server) isCurrent(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur == c
}

// succeeded records a request that got its answer.
func (s *server) succeeded() {
	s.mu.Lock()
	s.failures = 0
	s.retryAt = time.Time{}
	s.mu.Unlock()
}

// onNotification handles what c's server sends unasked. It runs on the
// transport's reader, so it must not block, let alone send a request.
func (s *server) onNotification(c *conn) func(mcpgo.JSONRPCNotification) {
	return func(n mcpgo.JSONRPCNotification) {
		switch n.Method {
		case mcpgo.MethodNotificationToolsListChanged:
			s.listChanged(c)
		case string(mcpgo.MethodNotificationMessage):
			data, _ := json.Marshal(n.Params.AdditionalFields["data"])
			s.log.Debug("server log message", "level", bound(fmt.Sprint(n.Params.AdditionalFields["level"]), 16), "data", bound(string(data), 512))
		}
	}
}

// listChanged marks the server's tools stale and refreshes them in the
// background: at most one refresh at a time and one a second, however
// often the server says its list changed.
func (s *server) listChanged(c *conn) {
	s.mu.Lock()
	if s.cur != c {
		s.mu.Unlock()
		return
	}
	s.listedAt = time.Time{}
	s.dirty = true
	if s.watching {
		s.mu.Unlock()
		return
	}
	s.watching = true
	s.mu.Unlock()
	s.log.Info("server says its tools changed")
	go func() {
		for {
			s.mu.Lock()
			if !s.dirty || s.m.isClosed() {
				s.watching = false
				s.mu.Unlock()
				return
			}
			s.dirty = false
			// A listing that began before the change may miss it.
			after := s.listGen + 1
			s.mu.Unlock()
			s.refresh(s.m.life, after)
			select {
			case <-time.After(time.Second):
			case <-s.m.life.Done():
			}
		}
	}()
}

// fresh reports whether the cached listing may be used (s.mu held).
func (s *server) fresh() bool {
	if !s.listed || s.listedAt.IsZero() || !s.cfg.Settings.CacheTools {
		return false
	}
	ttl := s.cfg.Settings.CacheTTL
	return ttl == 0 || time.Since(s.listedAt) < ttl
}

// toolList returns the server's tools, listing them first unless the cache
// is fresh. If listing fails, the last listing is returned (calls to its
// tools then get the server's error).
func (s *server) toolList(ctx context.Context) []remoteTool {
	s.mu.Lock()
	fresh := s.fresh()
	s.mu.Unlock()
	if !fresh {
		s.refresh(ctx, 0)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]remoteTool, 0, len(s.tools))
	for _, t := range s.tools {
		out = append(out, t)
	}
	return out
}

// refresh connects if needed and lists the server's tools. Concurrent
// refreshes share one listing, which runs under the Manager's lifetime
// (ctx only bounds the wait), provided it is at least the minGen-th: a
// listing already under way when the server announced a change is waited
// out, and then another one is made.
func (s *server) refresh(ctx context.Context, minGen uint64) *Error {
	for {
		s.mu.Lock()
		f := s.listing
		if f == nil {
			s.listGen++
			f = &flight{done: make(chan struct{}), gen: s.listGen}
			s.listing = f
			go func() {
				err := s.doRefresh()
				s.mu.Lock()
				s.listing = nil
				f.err = err
				close(f.done)
				s.mu.Unlock()
			}()
		}
		s.mu.Unlock()
		select {
		case <-f.done:
			if f.gen < minGen {
				continue
			}
			return f.err
		case <-ctx.Done():
			return s.errorf("listing tools", "gave up waiting: "+ctx.Err().Error(), errdefs.ErrUnavailable, ctx.Err())
		}
	}
}

func (s *server) doRefresh() *Error {
	c, err := s.connection(s.m.life)
	if err != nil {
		var e *Error
		if !errors.As(err, &e) {
			e = s.errorf("connecting", err.Error(), errdefs.ErrUnavailable)
		}
		return e
	}
	var tools map[string]remoteTool
	var skipped []string
	if c.noTools {
		tools = map[string]remoteTool{}
	} else {
		ctx, cancel := withTimeout(s.m.life, s.cfg.Settings.ConnectionTimeout)
		var e *Error
		tools, skipped, e = s.list(ctx, c)
		cancel()
		if e != nil {
			s.mu.Lock()
			s.fail(e)
			s.mu.Unlock()
			s.log.Warn("cannot list tools", "error", e.Detail())
			return e
		}
	}
	s.succeeded()
	s.mu.Lock()
	changed := s.listed && !sameTools(s.tools, tools)
	s.tools, s.skipped, s.listed, s.listedAt = tools, skipped, true, time.Now()
	s.mu.Unlock()
	if len(skipped) > 0 {
		s.log.Warn("some tools are not offered", "skipped", strings.Join(skipped, "; "))
	}
	s.log.Debug("listed tools", "tools", len(tools), "changed", changed)
	if changed {
		s.m.toolsChanged()
	}
	return nil
}

func sameTools(a, b map[string]remoteTool) bool {
	if len(a) != len(b) {
		return false
	}
	for k, t := range a {
		if u, ok := b[k]; !ok || u.digest != t.digest || u.remote != t.remote {
			return false
		}
	}
	return true
}

// wireTool is a tool definition as a server sends it; schemas stay raw.
type wireTool struct {
	Name         string                `json:"name"`
	Title        string                `json:"title"`
	Description  string                `json:"description"`
	InputSchema  json.RawMessage       `json:"inputSchema"`
	OutputSchema json.RawMessage       `json:"outputSchema"`
	Annotations  *mcpgo.ToolAnnotation `json:"annotations"`
}

// list pages through tools/list, at most 4×ResponseBudget bytes in all and
// maxToolsPerServer tools, and turns the definitions into offered tools.
func (s *server) list(ctx context.Context, c *conn) (map[string]remoteTool, []string, *Error) {
	op := "listing tools"
	var raws []json.RawMessage
	var skipped []string
	cursor, total := "", 0
	for page := 0; ; page++ {
		params := map[string]any{}
		if cursor != "" {
			params["cursor"] = cursor
		}
		res, err := c.request(ctx, "tools/list", params)
		if err != nil {
			e, _ := s.transportError(ctx, c, op, "tools/list", err)
			return nil, nil, e
		}
		if res, err = s.red.json(res); err != nil {
			return nil, nil, s.errorf(op, "the answer to tools/list is not JSON", errdefs.ErrUnavailable)
		}
		total += len(res)
		var p struct {
			Tools      []json.RawMessage `json:"tools"`
			NextCursor string            `json:"nextCursor"`
		}
		if err := json.Unmarshal(res, &p); err != nil {
			return nil, nil, s.errorf(op, "the answer to tools/list is not a ListToolsResult: "+err.Error(), errdefs.ErrUnavailable)
		}
		raws = append(raws, p.Tools...)
		if p.NextCursor == "" {
			break
		}
		if len(raws) >= maxToolsPerServer || total > 4*s.m.budget || page >= 100 {
			skipped = append(skipped, fmt.Sprintf("(more pages): the server offers more than vial takes (%d tools, %s, 100 pages)", maxToolsPerServer, human.Bytes(uint64(4*s.m.budget))))
			break
		}
		cursor = p.NextCursor
	}
	if len(raws) > maxToolsPerServer {
		skipped = append(skipped, fmt.Sprintf("(%d more): the server offers more than %d tools", len(raws)-maxToolsPerServer, maxToolsPerServer))
		raws = raws[:maxToolsPerServer]
	}

	type candidate struct {
		w       wireTool
		offered string
	}
	var exact, renamed []candidate
	for _, r := range raws {
		var w wireTool
		if err := json.Unmarshal(r, &w); err != nil {
			skipped = append(skipped, fmt.Sprintf("(a tool): its definition does not decode: %s", bound(err.Error(), 80)))
			continue
		}
		offered, ok := offeredName(s.cfg.Name, w.Name)
		if !ok {
			skipped = append(skipped, fmt.Sprintf("%s: its name is empty or too long for MCP's 128 characters with the server's prefix", quoteName(w.Name)))
			continue
		}
		if offered == s.cfg.Name+Separator+w.Name {
			exact = append(exact, candidate{w, offered})
		} else {
			renamed = append(renamed, candidate{w, offered})
		}
	}
	tools := map[string]remoteTool{}
	for _, cand := range append(exact, renamed...) {
		w := cand.w
		if prev, dup := tools[cand.offered]; dup {
			skipped = append(skipped, fmt.Sprintf("%s: offered as %s, which %s already is", quoteName(w.Name), cand.offered, quoteName(prev.remote)))
			continue
		}
		t, why := s.offer(cand.offered, w)
		if why != "" {
			skipped = append(skipped, quoteName(w.Name)+": "+why)
			continue
		}
		tools[cand.offered] = t
	}
	return tools, skipped, nil
}

// offer turns a server's definition into the one vial offers: the
// namespaced name, the description prefixed with the server's name, the
// schemas byte for byte, the annotations (untrusted hints: a server may
// call anything read-only). Icons, _meta and execution are not passed on.
func (s *server) offer(name string, w wireTool) (remoteTool, string) {
	in := []byte(`{"type":"object"}`)
	if len(w.InputSchema) > 0 && string(w.InputSchema) != "null" {
		if !isObject(w.InputSchema) {
			return remoteTool{}, "its inputSchema is not a JSON object"
		}
		in = w.InputSchema
	}
	var out json.RawMessage
	if len(w.OutputSchema) > 0 && string(w.OutputSchema) != "null" {
		if !isObject(w.OutputSchema) {
			return remoteTool{}, "its outputSchema is not a JSON object"
		}
		out = w.OutputSchema
	}
	prefix := fmt.Sprintf("Tool %q of the MCP server %q", w.Name, s.cfg.Name)
	if s.cfg.Title != "" {
		prefix += fmt.Sprintf(" (%s)", s.cfg.Title)
	}
	desc := prefix + "."
	if d := strings.TrimSpace(w.Description); d != "" {
		desc = prefix + ": " + human.TruncBytes(d, maxDescriptionLen)
	}
	def := mcpgo.Tool{
		Name:           name,
		Title:          bound(w.Title, maxTitleLen),
		Description:    desc,
		RawInputSchema: json.RawMessage(in),
	}
	if out != nil {
		def.RawOutputSchema = out
	}
	if a := w.Annotations; a != nil {
		def.Annotations = *a
		def.Annotations.Title = bound(a.Title, maxTitleLen)
	}
	digest, err := json.Marshal(def)
	if err != nil {
		return remoteTool{}, "its definition does not encode: " + bound(err.Error(), 80)
	}
	return remoteTool{remote: w.Name, def: def, hasOutput: out != nil, digest: string(digest)}, ""
}

func isObject(b json.RawMessage) bool {
	var m map[string]json.RawMessage
	return json.Unmarshal(b, &m) == nil && m != nil
}

// quoteName renders a server's tool name for a note, bounded.
func quoteName(n string) string { return fmt.Sprintf("%q", bound(n, 80)) }

// call sends one tools/call and returns the finished result. The call is
// sent once: if it may have reached the server, a failure is returned, not
// retried. The one exception is an HTTP session the server has ended
// (404): the server refused the request without running it, so it is sent
// again, once, on a new session.
func (s *server) call(ctx context.Context, t remoteTool, args any) (*mcpgo.CallToolResult, error) {
	op := "calling tool " + quoteName(t.remote)
	params := map[string]any{"name": t.remote}
	if args != nil {
		params["arguments"] = args
	}
	for attempt := 0; ; attempt++ {
		c, err := s.connection(ctx)
		if err != nil {
			return nil, err
		}
		callCtx, cancel := withTimeout(ctx, s.cfg.Settings.ToolTimeout)
		raw, err := c.request(callCtx, "tools/call", params)
		if err != nil && attempt == 0 && !c.stdio && errors.Is(err, mcptransport.ErrSessionTerminated) {
			cancel()
			s.log.Info("the server ended vial's session; starting a new one")
			s.drop(c)
			continue
		}
		if err != nil {
			e, _ := s.transportError(callCtx, c, op, "tools/call", err)
			cancel()
			if ctx.Err() != nil && !errors.Is(e, context.DeadlineExceeded) {
				e = s.errorf(op, "cancelled", context.Canceled)
			}
			var rpc *rpcError
			if !errors.As(err, &rpc) {
				s.mu.Lock()
				s.fail(e)
				s.mu.Unlock()
				if !c.stdio && !errors.Is(e, context.DeadlineExceeded) && ctx.Err() == nil {
					// Below MCP over HTTP: the next use starts afresh.
					s.connLost(c)
				}
			}
			s.log.Warn("tool call failed", "tool", t.remote, "error", e.Detail())
			return nil, e
		}
		cancel()
		if raw, err = s.red.json(raw); err != nil {
			return nil, s.errorf(op, "the answer to tools/call is not JSON", errdefs.ErrUnavailable)
		}
		res, err := mcpgo.ParseCallToolResult(&raw)
		if err != nil {
			return nil, s.errorf(op, "the answer to tools/call is not a CallToolResult: "+err.Error(), errdefs.ErrUnavailable)
		}
		s.succeeded()
		out, err := finishResult(res, s.cfg.Name, t.def.Name, t.hasOutput, s.m.budget, s.red)
		if err != nil {
			return nil, s.errorf(op, err.Error(), errdefs.ErrUnavailable)
		}
		if len(out.Content) != len(res.Content) || out.IsError != res.IsError {
			s.log.Info("result cut to the response budget", "tool", t.remote, "budget", s.m.budget)
		}
		return out, nil
	}
}

// status renders the server's state.
func (s *server) status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Status{
		Name:            s.cfg.Name,
		Title:           s.cfg.Title,
		Transport:       s.cfg.Transport,
		Sandboxed:       s.cfg.Sandboxed,
		AutoStart:       s.cfg.AutoStart,
		State:           s.state,
		Since:           s.since,
		Restarts:        max(s.connects-1, 0),
		Failures:        s.failures,
		RetryAt:         s.retryAt,
		Tools:           len(s.tools),
		Skipped:         slices.Clone(s.skipped),
		ServerName:      s.info.Name,
		ServerVersion:   s.info.Version,
		ProtocolVersion: s.proto,
	}
	if s.lastErr != nil {
		st.LastError, st.LastErrorAt = s.lastErr.Error(), s.lastErrAt
	}
	if !st.RetryAt.After(time.Now()) {
		st.RetryAt = time.Time{}
	}
	return st
}
