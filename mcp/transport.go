package mcp

import (
	"bufio"
	"bytes"
	"context"
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

	w := &lineWriter{w: out}
	pr, pw := io.Pipe()
	filterDone := make(chan struct{})
	go func() {
		defer close(filterDone)
		err := s.filterInput(ctx, in, pw, w)
		pw.CloseWithError(err) // nil: EOF for the server
	}()

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
				fmt.Sprintf("message larger than the %s limit was skipped", fmtBytes(uint64(s.maxMsg)))))
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
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func (l *lineWriter) writeMessage(b []byte) {
	_, _ = l.Write(append(b, '\n'))
}

// slogWriter adapts mcp-go's *log.Logger error output to slog.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Warn("mcp transport", "message", string(bytes.TrimSpace(p)))
	return len(p), nil
}

// HTTPHandler serves MCP over streamable HTTP (POST, GET and DELETE on
// whatever path it is mounted at). Request bodies above
// Options.MaxMessageBytes are refused with 413. Requests that reach a
// loopback listener with a non-loopback Host header are refused (DNS
// rebinding protection).
func (s *Server) HTTPHandler() http.Handler {
	h := mcpserver.NewStreamableHTTPServer(s.mcp, mcpserver.WithStreamableHTTPLogger(s.log))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > s.maxMsg {
			http.Error(w, "request body too large", http.StatusRequestEntityTooLarge)
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, s.maxMsg)
		h.ServeHTTP(w, r)
	})
}

// ServeHTTP listens on addr and serves MCP over streamable HTTP at /mcp
// until ctx is cancelled, then shuts down gracefully (in-flight calls get
// a few seconds) and returns nil.
func (s *Server) ServeHTTP(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener is ServeHTTP on an existing listener, which it closes.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/mcp", s.HTTPHandler())
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
