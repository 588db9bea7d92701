package mcp

import (
	"bufio"
	"bytes"
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
	"github.com/vial-run/vial/internal/human"
)

// Concurrency of the stdio transport: mcp-go serves tool calls from a
// worker pool (other requests each get a goroutine). Use its maximum so
// long-running calls do not hold up others; calls beyond it queue.
const (
	stdioWorkers = 100
	stdioQueue   = 1000
)

// stdioActive guards against two ServeStdio calls at once: mcp-go keeps a
// single, package-global stdio session, so a second one would receive the
// first one's notifications.
var stdioActive atomic.Bool

// ServeStdio speaks MCP as newline-delimited JSON-RPC on in and out until
// in reaches EOF or ctx is cancelled (SIGTERM in cmd/vial); both end it
// cleanly with a nil error. In-flight calls are cancelled and waited for
// before it returns; tearing down contexts is the caller's job.
//
// In front of mcp-go's stdio server sits a framing filter that answers, and
// skips, any message larger than Options.MaxMessageBytes with a JSON-RPC
// error instead of buffering it without bound, and (with
// Options.LegacyProtocol) answers server/discover with -32601. Malformed
// JSON gets -32700 Parse error and unknown methods -32601 Method not found
// from mcp-go itself; the server keeps serving after each.
//
// Only one ServeStdio may run per process at a time.
func (s *Server) ServeStdio(ctx context.Context, in io.Reader, out io.Writer) error {
	if !stdioActive.CompareAndSwap(false, true) {
		return errors.New("serving stdio: another stdio server is running in this process")
	}
	defer stdioActive.Store(false)

	w := newLineWriter(out, s.writeTO)
	defer w.close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A client that stops reading for longer than the write timeout is
	// gone: serving ends, and with it every sandbox.
	w.onStall = func() {
		s.log.Error("the MCP client stopped reading; ending the session", "write_timeout", s.writeTO)
		cancel()
	}
	go func() {
		// On end of input or SIGTERM, writes still blocked on a client that
		// does not read fail at once, so teardown never waits for it.
		<-ctx.Done()
		w.close()
	}()
	pr, pw := io.Pipe()
	filterDone := make(chan struct{})
	go func() {
		defer close(filterDone)
		err := s.filterInput(ctx, in, pw, w)
		// Input has ended: the answers still owed go out only to a client
		// that reads them promptly (see eofWriteTimeout).
		w.inputEnded()
		pw.CloseWithError(err) // nil: EOF for the server
	}()

	if s.down != nil {
		// The stdio client's session exists from the start, so that
		// downstream servers with auto_start connect at start-up.
		if sess, err := s.sessions.of(ctx); err == nil {
			s.down.manager(sess)
		}
	}
	errLog := log.New(slogWriter{s.log}, "", 0)
	stdio := mcpserver.NewStdioServer(s.mcp)
	mcpserver.WithErrorLogger(errLog)(stdio)
	mcpserver.WithWorkerPoolSize(stdioWorkers)(stdio)
	mcpserver.WithQueueSize(stdioQueue)(stdio)
	s.log.Info("serving MCP on stdio", "tools", len(s.toolNames))
	err := stdio.Listen(ctx, pr, w)
	pr.CloseWithError(io.EOF) // unblock the filter if Listen ended first
	select {
	case <-filterDone:
	case <-time.After(100 * time.Millisecond):
		// The filter is blocked reading in (e.g. os.Stdin on SIGTERM); it
		// ends with the process.
	}
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrClosedPipe) {
		return nil
	}
	return fmt.Errorf("serving stdio: %w", err)
}

// filterInput copies newline-delimited messages from in to pw, answering
// oversized messages (and server/discover in legacy mode) itself.
func (s *Server) filterInput(ctx context.Context, in io.Reader, pw io.Writer, out *lineWriter) error {
	br := bufio.NewReaderSize(in, 64<<10)
	for {
		if ctx.Err() != nil {
			return nil
		}
		line, tooBig, err := readLine(br, s.maxMsg)
		if tooBig {
			s.log.Warn("rejected oversized JSON-RPC message", "limit_bytes", s.maxMsg)
			out.writeMessage(errorResponse(nil, mcpgo.INVALID_REQUEST,
				fmt.Sprintf("message larger than the %s limit was skipped", human.Bytes(uint64(s.maxMsg)))))
		} else if len(bytes.TrimSpace(line)) > 0 {
			if s.legacy && s.answerDiscover(line, out) {
				// answered here
			} else if _, werr := pw.Write(append(line, '\n')); werr != nil {
				return nil
			}
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}

// readLine reads one line without its newline. A line longer than limit
// is consumed and dropped, reported as tooBig.
func readLine(br *bufio.Reader, limit int64) (line []byte, tooBig bool, err error) {
	for {
		frag, isPrefix, rerr := br.ReadLine()
		if !tooBig {
			if int64(len(line)+len(frag)) > limit {
				tooBig, line = true, nil
			} else {
				line = append(line, frag...)
			}
		}
		if rerr != nil {
			return line, tooBig, rerr
		}
		if !isPrefix {
			return line, tooBig, nil
		}
	}
}

// answerDiscover answers a server/discover request with -32601 so the
// client falls back to initialize. It reports whether line was one.
func (s *Server) answerDiscover(line []byte, out *lineWriter) bool {
	var m struct {
		Method string          `json:"method"`
		ID     json.RawMessage `json:"id"`
	}
	if json.Unmarshal(line, &m) != nil || m.Method != string(mcpgo.MethodServerDiscover) || len(m.ID) == 0 {
		return false
	}
	out.writeMessage(errorResponse(m.ID, mcpgo.METHOD_NOT_FOUND, "Method server/discover not found"))
	return true
}

func errorResponse(id json.RawMessage, code int, msg string) []byte {
	if len(id) == 0 {
		id = json.RawMessage("null")
	}
	b, _ := json.Marshal(map[string]any{
		"jsonrpc": "2.0",
		"id":      id,
		"error":   map[string]any{"code": code, "message": msg},
	})
	return b
}

// lineWriter serialises whole messages onto the output: mcp-go writes each
// message with one Write call, and the filter's own answers go through
// writeMessage, so lines never interleave.
//
// Writes are bounded in time: one goroutine does the writing, and a
// message it cannot hand to the client within timeout fails, calls
// onStall once and breaks the writer, so every later write fails at once.
// A client that stops reading can therefore never hold a tool call, a
// worker or the teardown. The goroutine itself may stay blocked in the
// write until the process exits; it holds one message.
type lineWriter struct {
	mu      sync.Mutex // one message at a time
	out     io.Writer
	timeout time.Duration
	onStall func()

	reqs   chan []byte
	done   chan error
	broken chan struct{}
	once   sync.Once
	eof    chan struct{} // closed when input ends
	eofSet sync.Once
}

// eofWriteTimeout bounds each write once the client has closed its input:
// the calls still in flight are cancelled and their answers are owed only
// to a client that still reads. One that does not must not hold the
// teardown for the full write timeout (end of input tears everything down
// within seconds).
const eofWriteTimeout = 2 * time.Second

var errWriterBroken = errors.New("the MCP client is not reading")

func newLineWriter(out io.Writer, timeout time.Duration) *lineWriter {
	l := &lineWriter{out: out, timeout: timeout, reqs: make(chan []byte), done: make(chan error, 1), broken: make(chan struct{}), eof: make(chan struct{})}
	go func() {
		for p := range l.reqs {
			_, err := l.out.Write(p)
			l.done <- err
		}
	}()
	return l
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case <-l.broken:
		return 0, errWriterBroken
	default:
	}
	eof := l.eof
	timeout := l.timeout
	select {
	case <-eof:
		timeout, eof = min(timeout, eofWriteTimeout), nil
	default:
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case l.reqs <- p:
	case <-l.broken:
		return 0, errWriterBroken
	}
	for {
		select {
		case err := <-l.done:
			if err != nil {
				return 0, err
			}
			return len(p), nil
		case <-eof:
			// Input ended while this write waits: from now on it gets
			// eofWriteTimeout at most.
			eof = nil
			t.Reset(min(timeout, eofWriteTimeout))
		case <-t.C:
			l.close()
			if l.onStall != nil {
				l.onStall()
			}
			return 0, errWriterBroken
		case <-l.broken:
			return 0, errWriterBroken
		}
	}
}

// inputEnded says the client closed its input (see eofWriteTimeout).
func (l *lineWriter) inputEnded() { l.eofSet.Do(func() { close(l.eof) }) }

// close breaks the writer: pending and later writes fail at once.
func (l *lineWriter) close() { l.once.Do(func() { close(l.broken) }) }

func (l *lineWriter) writeMessage(b []byte) {
	_, _ = l.Write(append(b, '\n'))
}

// slogWriter adapts mcp-go's *log.Logger error output to slog.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Warn("mcp transport", "message", string(bytes.TrimSpace(p)))
	return len(p), nil
}

// sessionProtocols are the protocol revisions the HTTP transport offers:
// those with protocol-level sessions. Revision 2026-07-28 removed sessions
// from streamable HTTP; on it every client would share one view, and vial
// keeps each client's contexts and files its own. Clients negotiate
// 2025-11-25 instead (server/discover lists only these).
var sessionProtocols = []string{
	mcpgo.ProtocolVersion20251125,
	mcpgo.ProtocolVersion20250618,
	mcpgo.ProtocolVersion20250326,
}

// HTTPSessionIdle ends an HTTP session (and stops its sandboxes) after this
// long without a request.
const HTTPSessionIdle = time.Hour

// HTTPHandler serves MCP over streamable HTTP (POST, GET and DELETE on
// whatever path it is mounted at). Each HTTP session has its own service
// session; session IDs are issued and checked by vial. Request bodies
// above Options.MaxMessageBytes are refused with 413. Requests that reach a
// loopback listener with a non-loopback Host header are refused (DNS
// rebinding protection). Authentication is the caller's: wrap the handler
// (see RequireBearer).
func (s *Server) HTTPHandler() http.Handler {
	h := mcpserver.NewStreamableHTTPServer(s.mcp,
		mcpserver.WithStreamableHTTPLogger(s.log),
		mcpserver.WithSessionIdManager(s.sessions),
		mcpserver.WithStreamableHTTPProtocolVersions(sessionProtocols...),
		mcpserver.WithSessionIdleTTL(HTTPSessionIdle),
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.maxMsg {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.maxMsg)
		h.ServeHTTP(w, r)
	})
}

// RequireBearer wraps h so that every request must carry "Authorization:
// Bearer <token>", compared in constant time; anything else gets 401 with
// a WWW-Authenticate challenge and never reaches h. An empty token is a
// programming error (the caller chose no authentication) and panics.
func RequireBearer(token string, h http.Handler) http.Handler {
	if token == "" {
		panic("mcp: RequireBearer with an empty token")
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(r.Header.Get("Authorization"))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vial"`)
			http.Error(w, "unauthorized: this vial server needs its bearer token (Authorization: Bearer <token>)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// ServeHTTP listens on addr and serves MCP over streamable HTTP at /mcp
// until ctx is cancelled, then shuts down gracefully (in-flight calls get
// a few seconds) and returns nil. A non-empty token is required of every
// request (RequireBearer).
func (s *Server) ServeHTTP(ctx context.Context, addr, token string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	return s.ServeListener(ctx, ln, token)
}

// ServeListener is ServeHTTP on an existing listener, which it closes.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener, token string) error {
	mux := http.NewServeMux()
	var h http.Handler = s.HTTPHandler()
	if token != "" {
		h = RequireBearer(token, h)
	}
	mux.Handle("/mcp", h)
	for pattern, rh := range s.routes {
		mux.Handle(pattern, rh)
	}
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(slogWriter{s.log}, "", 0),
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("serving MCP over streamable HTTP", "addr", ln.Addr().String(), "path", "/mcp")
	select {
	case err := <-errc:
		return fmt.Errorf("serving http: %w", err)
	case <-ctx.Done():
	}
	shutCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutCtx); err != nil {
		_ = srv.Close()
	}
	<-errc
	return nil
}
