package downstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
	mcpclient "github.com/mark3labs/mcp-go/client"
	mcptransport "github.com/mark3labs/mcp-go/client/transport"
	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/vial-run/vial/internal/human"
)

// ProtocolVersion is the MCP revision vial speaks to downstream servers.
//
// mcp-go's client first probes with server/discover (2026-07-28) and falls
// back to initialize only after an error answer or a five-second wait. The
// official npm servers (TypeScript SDK 1.x) answer the probe with -32601
// and settle on 2025-11-25 anyway; over HTTP the probe is a wasted request,
// and a server that ignores unknown methods would cost every connect five
// seconds. So vial pins 2025-11-25 and sends initialize at once; a server
// that speaks only 2026-07-28 refuses it and gets a clear error.
const ProtocolVersion = mcpgo.LATEST_LEGACY_PROTOCOL_VERSION

// conn is one live connection to a server: a process or sandbox and its
// pipes, or an HTTP session.
type conn struct {
	client *mcpclient.Client
	tr     mcptransport.Interface
	stdio  bool
	proc   io.Closer // stdio: the process or sandbox
	framer *framer   // stdio
	pipe   io.Closer // stdio: the framer's end of the pipe to mcp-go
	cancel context.CancelFunc
	seq    atomic.Int64

	lost      chan struct{}
	lostOnce  sync.Once
	closeOnce sync.Once
	closed    chan struct{}

	noTools bool // the server declared no tools capability
	info    mcpgo.Implementation
	proto   string
}

// markLost records that the connection is dead; it reports whether this
// call was the first to say so.
func (c *conn) markLost() bool {
	first := false
	c.lostOnce.Do(func() {
		close(c.lost)
		first = true
	})
	return first
}

func (c *conn) isLost() bool {
	select {
	case <-c.lost:
		return true
	default:
		return false
	}
}

// close tears the connection down: the client (stdin closes, or the HTTP
// session is ended), the framer's pipe to mcp-go, then the process. It
// returns when everything is released (for a process at most a few
// seconds, see hostProc.Close).
func (c *conn) close() {
	c.closeOnce.Do(func() {
		c.markLost()
		c.cancel()
		if c.client != nil {
			c.client.Close()
		} else if c.tr != nil {
			c.tr.Close()
		}
		if c.pipe != nil {
			c.pipe.Close()
		}
		if c.proc != nil {
			c.proc.Close()
		}
		close(c.closed)
	})
}

// rpcError is a JSON-RPC error answer from the server.
type rpcError struct {
	code int
	msg  string
}

func (e *rpcError) Error() string { return fmt.Sprintf("%s (JSON-RPC error %d)", e.msg, e.code) }

// request sends one request and returns its result. It goes to the
// transport directly, not through mcp-go's client, so that tool
// definitions keep their schemas byte for byte (mcp-go's Tool drops
// schema keywords it has no field for), and so that a call is sent exactly
// once (mcp-go's client resends a tools/call that asks for more input).
// When ctx ends first, a stdio server is told with notifications/cancelled
// (over HTTP, ending the request is the cancellation).
func (c *conn) request(ctx context.Context, method string, params any) (json.RawMessage, error) {
	id := mcpgo.NewRequestId(fmt.Sprintf("vial-%d", c.seq.Add(1)))
	resp, err := c.tr.SendRequest(ctx, mcptransport.JSONRPCRequest{
		JSONRPC: mcpgo.JSONRPC_VERSION, ID: id, Method: method, Params: params,
	})
	if err != nil {
		if ctx.Err() != nil && c.stdio && !c.isLost() {
			go func() {
				nctx, cancel := context.WithTimeout(context.Background(), time.Second)
				defer cancel()
				c.tr.SendNotification(nctx, mcpgo.JSONRPCNotification{
					JSONRPC: mcpgo.JSONRPC_VERSION,
					Notification: mcpgo.Notification{
						Method: string(mcpgo.MethodNotificationCancelled),
						Params: mcpgo.NotificationParams{AdditionalFields: map[string]any{"requestId": id, "reason": "timed out"}},
					},
				})
			}()
		}
		return nil, err
	}
	if resp.Error != nil {
		return nil, &rpcError{code: resp.Error.Code, msg: resp.Error.Message}
	}
	if len(resp.Result) == 0 {
		return nil, errors.New("the answer has no result")
	}
	return resp.Result, nil
}

// dialOnce makes one connection attempt: start the process or reach the
// URL, then the initialize handshake, all within ctx. retry says whether
// another attempt could succeed.
func (s *server) dialOnce(ctx context.Context) (_ *conn, _ *Error, retry bool) {
	op := "connecting"
	life, cancel := context.WithCancel(s.m.life)
	c := &conn{cancel: cancel, lost: make(chan struct{}), closed: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			c.close()
		}
	}()
	maxMsg := 4 * s.m.budget

	switch s.cfg.Transport {
	case TransportStdio:
		start, how := Starter(StartHost), "starting the server"
		if s.cfg.Sandboxed {
			if s.m.opts.Starter == nil {
				return nil, s.errorf(op, "sandboxed = true, but vial cannot start sandboxes here; the server is not started on the host instead", errdefs.ErrFailedPrecondition, errdefs.ErrUnavailable), false
			}
			start, how = s.m.opts.Starter, "starting the server's sandbox"
		}
		stdin, stdout, proc, err := start(ctx, s.cfg.Name, s.cfg.Command, s.cfg.Env)
		if err != nil {
			retry := !errors.Is(err, errdefs.ErrNotFound) && !errors.Is(err, errdefs.ErrInvalidArgument) && ctx.Err() == nil
			cls := append([]error{errdefs.ErrUnavailable}, classesOf(err)...)
			return nil, s.errorf(op, fmt.Sprintf("%s: %v", how, err), cls...), retry
		}
		c.stdio, c.proc = true, proc
		fr, out := newFramer(stdout, maxMsg)
		// Closing the framer's writing end gives mcp-go a clean EOF and
		// unblocks a framer waiting for mcp-go to read.
		c.framer, c.pipe = fr, fr.dst
		c.tr = mcptransport.NewIO(out, newQueueWriter(stdin, maxPendingInput), nil)
		go func() {
			// The server's end: its output closed, because it exited,
			// crashed, or broke the framing.
			<-fr.done
			s.connLost(c)
		}()
	case TransportHTTP:
		tr, err := mcptransport.NewStreamableHTTP(s.cfg.URL,
			mcptransport.WithHTTPBasicClient(newHTTPClient(maxMsg, s.authHeader())),
			// The standalone GET stream is where a server of protocol
			// 2025-11-25, the one vial speaks, sends
			// notifications/tools/list_changed outside any request.
			//lint:ignore SA1019 deprecated for 2026-07-28 only.
			mcptransport.WithContinuousListening(),
			mcptransport.WithHTTPLogger(s.libLog))
		if err != nil {
			return nil, s.errorf(op, "the URL does not parse", errdefs.ErrInvalidArgument), false
		}
		c.tr = tr
	case TransportSSE:
		endpointWait := s.cfg.Settings.ConnectionTimeout
		if dl, ok := ctx.Deadline(); ok {
			endpointWait = time.Until(dl)
		}
		tr, err := mcptransport.NewSSE(s.cfg.URL,
			mcptransport.WithHTTPClient(newHTTPClient(maxMsg, s.authHeader())),
			mcptransport.WithEndpointTimeout(endpointWait),
			mcptransport.WithSSELogger(s.libLog))
		if err != nil {
			return nil, s.errorf(op, "the URL does not parse", errdefs.ErrInvalidArgument), false
		}
		c.tr = tr
	}

	c.client = mcpclient.NewClient(c.tr, mcpclient.WithProtocolVersion(ProtocolVersion))
	c.client.OnNotification(s.onNotification(c))
	if s.cfg.Transport == TransportSSE {
		c.client.OnConnectionLost(func(error) { s.connLost(c) })
	}
	// The transport lives as long as the connection (an HTTP server's event
	// stream, the stdio reader), so it starts under life, not ctx.
	if err := c.client.Start(life); err != nil {
		e, retry := s.transportError(ctx, c, op, "", err)
		return nil, e, retry
	}
	init, err := c.client.Initialize(ctx, mcpgo.InitializeRequest{Params: mcpgo.InitializeParams{
		ProtocolVersion: ProtocolVersion,
		ClientInfo:      mcpgo.Implementation{Name: "vial", Version: s.m.opts.ClientVersion},
		// No capabilities: a server may not ask vial's client for
		// sampling, elicitation or roots.
		Capabilities: mcpgo.ClientCapabilities{},
	}})
	if err != nil {
		e, retry := s.transportError(ctx, c, op, "initialize", err)
		return nil, e, retry
	}
	c.info = mcpgo.Implementation{Name: bound(s.red.replace(init.ServerInfo.Name), maxTitleLen), Version: bound(s.red.replace(init.ServerInfo.Version), maxTitleLen)}
	c.proto = bound(init.ProtocolVersion, 32)
	c.noTools = init.Capabilities.Tools == nil
	ok = true
	return c, nil, false
}

func (s *server) authHeader() string {
	if s.cfg.BearerToken == "" {
		return ""
	}
	return "Bearer " + s.cfg.BearerToken
}

// transportError turns what mcp-go returned for a request (method, or ""
// for starting the transport) into an Error, and says whether a new
// connection could help.
func (s *server) transportError(ctx context.Context, c *conn, op, method string, err error) (*Error, bool) {
	var auth *mcptransport.AuthorizationRequiredError
	var rpc *rpcError
	var unsup mcpgo.UnsupportedProtocolVersionError
	var netErr net.Error
	switch {
	case errors.As(err, &auth):
		return s.errorf(op, "the server refused vial's credentials (HTTP 401); check api_key_env", errdefs.ErrUnauthenticated), false
	case errors.Is(err, mcptransport.ErrLegacySSEServer):
		return s.errorf(op, `the URL does not answer MCP's streamable HTTP (HTTP 4xx to initialize); if the server offers only the older HTTP+SSE transport, set transport = "sse"`, errdefs.ErrUnavailable), false
	case errors.As(err, &unsup):
		return s.errorf(op, fmt.Sprintf("the server answered with protocol version %q, which vial does not speak (it speaks %s)", bound(unsup.Version, 32), ProtocolVersion), errdefs.ErrUnavailable), false
	case errors.Is(err, mcpgo.ErrMethodNotFound) && method == "initialize":
		return s.errorf(op, fmt.Sprintf("the server does not know initialize; vial speaks MCP %s to downstream servers", ProtocolVersion), errdefs.ErrUnavailable), false
	case errors.As(err, &rpc):
		return s.rpcErr(op, method, rpc), false
	case method == "initialize" && !errors.As(err, new(*mcptransport.Error)) && ctx.Err() == nil:
		// mcp-go returns a JSON-RPC error answer, or an answer it cannot
		// decode, as it is; transport failures come wrapped.
		return s.errorf(op, "the server's answer to initialize is not usable: "+err.Error(), errdefs.ErrUnavailable), false
	case errors.Is(err, errRedirect):
		return s.errorf(op, errRedirect.Error(), errdefs.ErrUnavailable), false
	case errors.Is(err, errTooLarge):
		return s.errorf(op, "it sent a message over "+human.Bytes(uint64(4*s.m.budget)), errdefs.ErrResourceExhausted, errdefs.ErrUnavailable), false
	case errors.Is(err, errNotReading):
		return s.errorf(op, errNotReading.Error(), errdefs.ErrResourceExhausted, errdefs.ErrUnavailable), false
	}
	if c.stdio && (c.isLost() || errors.Is(err, mcptransport.ErrTransportClosed) || errors.Is(err, io.ErrClosedPipe) || errors.Is(err, syscall.EPIPE)) {
		why, cls := s.endReason(c)
		s.connLost(c)
		return s.errorf(op, why, cls...), !errors.Is(errors.Join(cls...), errdefs.ErrResourceExhausted)
	}
	if ctx.Err() != nil {
		what := "answer"
		if method != "" {
			what = "answer " + method
		}
		msg := fmt.Sprintf("the server did not %s within %s", what, s.timeoutOf(ctx))
		if c.framer != nil {
			if n, junk, _ := c.framer.stats(); n > 0 {
				msg += fmt.Sprintf("; it wrote %d line(s) that are not JSON-RPC, the first: %q", n, junk)
			}
		}
		if errors.Is(ctx.Err(), context.Canceled) {
			return s.errorf(op, "cancelled", context.Canceled), false
		}
		return s.errorf(op, msg, errdefs.ErrUnavailable, context.DeadlineExceeded), false
	}
	var detail string
	if errors.As(err, &netErr) || errors.Is(err, syscall.ECONNREFUSED) {
		detail = "cannot reach " + safeURL(s.cfg.URL) + ": " + netDetail(err)
	} else {
		detail = strings.TrimPrefix(err.Error(), "transport error: ")
	}
	return s.errorf(op, detail, errdefs.ErrUnavailable), true
}

// netDetail is the last part of a network error ("connection refused").
func netDetail(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

// rpcErr is the Error for a JSON-RPC error answer.
func (s *server) rpcErr(op, method string, e *rpcError) *Error {
	var cls error = errdefs.ErrUnknown
	switch e.code {
	case mcpgo.INVALID_PARAMS:
		cls = errdefs.ErrInvalidArgument
	case mcpgo.METHOD_NOT_FOUND:
		cls = errdefs.ErrNotImplemented
	}
	return s.errorf(op, fmt.Sprintf("the server answered %s with an error: %s", method, e.Error()), cls)
}

// timeoutOf renders the timeout that ctx had.
func (s *server) timeoutOf(ctx context.Context) string {
	if d, ok := ctx.Value(timeoutKey{}).(time.Duration); ok {
		return d.String()
	}
	return "its timeout"
}

type timeoutKey struct{}

// withTimeout is context.WithTimeout that remembers d for messages.
func withTimeout(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithValue(ctx, timeoutKey{}, d), d)
}

// endReason says why a stdio server's output ended, for an error.
func (s *server) endReason(c *conn) (string, []error) {
	// The framer finishes before mcp-go sees EOF; wait for it so that the
	// reason is known.
	select {
	case <-c.framer.done:
	case <-time.After(time.Second):
	}
	n, junk, end := c.framer.stats()
	cls := []error{errdefs.ErrUnavailable}
	var why string
	switch {
	case end != nil:
		why = end.Error() + "; vial closed the connection"
		cls = append(cls, classesOf(end)...)
	default:
		why = "it closed its output"
		if er, ok := c.proc.(exitReporter); ok {
			if exited, how := er.Exited(); exited {
				why = "it " + how
			}
		}
	}
	if n > 0 {
		why += fmt.Sprintf("; it wrote %d line(s) that are not JSON-RPC, the first: %q", n, junk)
	}
	return why, cls
}
