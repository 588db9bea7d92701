package downstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// Transport is how vial talks to a downstream server.
type Transport string

const (
	// TransportStdio runs the server as a process (or a sandbox, see
	// Server.Sandboxed) and speaks newline-delimited JSON-RPC on its stdin
	// and stdout.
	TransportStdio Transport = "stdio"
	// TransportHTTP is MCP's streamable HTTP transport.
	TransportHTTP Transport = "http"
	// TransportSSE is the deprecated HTTP+SSE transport of protocol
	// 2024-11-05, for servers that offer nothing newer.
	TransportSSE Transport = "sse"
)

// Defaults for the zero values of Settings and Options.
const (
	DefaultConnectionTimeout = 10 * time.Second
	DefaultToolTimeout       = 60 * time.Second
	DefaultResponseBudget    = 4 << 20
)

// Settings are mcp.toml's [settings], applied to one server.
type Settings struct {
	// ConnectionTimeout bounds one connect: starting the process or
	// reaching the URL, the initialize handshake and every retry, and,
	// separately, each tools/list. Zero means DefaultConnectionTimeout.
	ConnectionTimeout time.Duration
	// ToolTimeout bounds one tools/call, from the request to its result.
	// Zero means DefaultToolTimeout.
	ToolTimeout time.Duration
	// MaxRetries is how many more times a connect is tried after a
	// transient failure (the process exited during start-up, the
	// connection was refused), within ConnectionTimeout. Failures that
	// another try cannot fix (no such command, 401, a protocol error) are
	// not retried, and neither is a tool call that may have reached the
	// server: a call is sent at most once.
	MaxRetries int
	// CacheTools keeps a server's tools/list for CacheTTL: Manager.Tools
	// asks the server again only when the list is older, or when the
	// server announced a change. Off, every Manager.Tools asks.
	CacheTools bool
	// CacheTTL is how long a cached list is used; zero with CacheTools on
	// means until the server announces a change.
	CacheTTL time.Duration
}

// Server is one downstream MCP server.
type Server struct {
	// Name is the configuration's table key and the namespace of the
	// server's tools ("<Name>__<tool>"). See ValidateServerName.
	Name string
	// Title is a display name for logs and status ("" for none).
	Title string
	// Disabled servers are listed by Status and never connected.
	Disabled bool
	// AutoStart connects the server in Manager.Start; otherwise it is
	// connected on first use (Manager.Tools or a call).
	AutoStart bool
	Transport Transport
	// Command is the stdio server's program and arguments, already
	// expanded (${VAR}). A program without a slash is looked up in PATH.
	Command []string
	// Env is added to the stdio server's environment. A host process gets
	// only a few variables of vial's own environment besides (see
	// StartHost); a sandboxed one gets Env alone, plus whatever the
	// Starter adds.
	Env []string
	// Sandboxed runs the stdio server through Options.Starter instead of as
	// a host process. Without a Starter such a server fails to connect: it
	// never falls back to the host.
	Sandboxed bool
	// URL is the http or sse server's endpoint. A password or query in it
	// is treated as a secret, like BearerToken.
	URL string
	// BearerToken, if set, is sent as "Authorization: Bearer <token>" to
	// the http or sse server. It is a secret: it is never written to a log,
	// an error, a tool definition or a result (any occurrence a server
	// sends back is replaced by "[redacted]").
	BearerToken string
	Settings    Settings
}

// Starter starts a stdio server inside a sandbox: argv is Server.Command,
// env is Server.Env. ctx bounds starting only: the process lives until the
// returned closer is called, which must stop it, release everything it
// held, and make stdout reach EOF. stdout reaching EOF by itself means the
// server has gone. If the closer also has a method `Exited() (bool,
// string)`, its answer ("exit status 1", "killed by SIGKILL") is put in
// errors about the server's end.
type Starter func(ctx context.Context, server string, argv, env []string) (stdin io.WriteCloser, stdout io.Reader, proc io.Closer, err error)

// Options configure a Manager.
type Options struct {
	Servers []Server
	// Starter starts the servers with Sandboxed set; nil makes them fail.
	Starter Starter
	// Log receives one line per connect, failure, crash and list change,
	// always with a "server" attribute; nil discards.
	Log *slog.Logger
	// OnToolsChanged is called, from a goroutine of its own and never two
	// at once, when the tools a server offers changed after it announced a
	// change (notifications/tools/list_changed). The caller then calls
	// Tools and passes the change on to its own clients.
	OnToolsChanged func()
	// ResponseBudget bounds the size of one call's result, in bytes
	// (content and structuredContent); a larger result is cut, with a
	// notice. Any single message from a server is bounded at four times
	// it. Zero means DefaultResponseBudget.
	ResponseBudget int
	// ClientVersion is the version vial gives in its clientInfo ("dev"
	// if empty).
	ClientVersion string
}

// Limits on what a server may send, beyond the response budget.
const (
	minResponseBudget  = 4 << 10
	maxToolsPerServer  = 1000
	maxDescriptionLen  = 8 << 10
	maxTitleLen        = 256
	maxErrorDetail     = 512
	maxGarbageSample   = 120
	stderrTailBytes    = 2 << 10
	maxPendingInput    = 16 << 20
	maxBackoff         = 30 * time.Second
	firstBackoff       = 500 * time.Millisecond
	waitBackoffAtMost  = time.Second
	closeProcessWithin = 2 * time.Second
)

// withDefaults returns s with zero timeouts replaced by the defaults.
func (s Settings) withDefaults() Settings {
	if s.ConnectionTimeout <= 0 {
		s.ConnectionTimeout = DefaultConnectionTimeout
	}
	if s.ToolTimeout <= 0 {
		s.ToolTimeout = DefaultToolTimeout
	}
	return s
}

// validate reports every problem of s at once. Messages never hold the
// bearer token.
func (s Server) validate() error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("mcp server %q: %s: %w", s.Name, fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument))
	}
	if err := ValidateServerName(s.Name); err != nil {
		errs = append(errs, err)
	}
	if s.Settings.MaxRetries < 0 {
		bad("max_retries is %d, want 0 or more", s.Settings.MaxRetries)
	}
	if s.Settings.ConnectionTimeout < 0 || s.Settings.ToolTimeout < 0 || s.Settings.CacheTTL < 0 {
		bad("timeouts must not be negative")
	}
	switch s.Transport {
	case TransportStdio:
		if len(s.Command) == 0 || s.Command[0] == "" {
			bad("a stdio server needs a command")
		}
		if s.URL != "" && !strings.HasPrefix(s.URL, "stdio://") {
			bad("a stdio server takes a command, not the URL %s", safeURL(s.URL))
		}
		if s.BearerToken != "" {
			bad("api_key_env applies to http servers only; a stdio server would not receive it")
		}
	case TransportHTTP, TransportSSE:
		if len(s.Command) != 0 {
			bad("an %s server takes a URL, not a command", s.Transport)
		}
		if s.Sandboxed {
			bad("only a stdio server can run sandboxed")
		}
		u, err := url.Parse(s.URL)
		switch {
		case err != nil:
			bad("the URL does not parse")
		case u.Scheme != "http" && u.Scheme != "https":
			bad("the URL %s is not http or https", safeURL(s.URL))
		case u.Host == "":
			bad("the URL %s has no host", safeURL(s.URL))
		}
		if strings.ContainsFunc(s.BearerToken, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			bad("the bearer token holds control characters")
		}
	default:
		bad("transport %q is not stdio, http or sse", s.Transport)
	}
	return errors.Join(errs...)
}

// cleartextToken reports whether s would send its token unencrypted to
// another host.
func (s Server) cleartextToken() bool {
	if s.BearerToken == "" {
		return false
	}
	u, err := url.Parse(s.URL)
	if err != nil || u.Scheme != "http" {
		return false
	}
	host := u.Hostname()
	if host == "localhost" {
		return false
	}
	ip := net.ParseIP(host)
	return ip == nil || !ip.IsLoopback()
}

// safeURL renders u for messages: scheme, host and path only, so that
// credentials in the user part or the query never show.
func safeURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	return (&url.URL{Scheme: p.Scheme, Host: p.Host, Path: p.Path}).String()
}

// urlSecrets are the strings of a server's configuration that must not be
// shown: the bearer token, and a password or query in the URL (where some
// services put their key). Error messages of Go's HTTP client quote the
// whole URL.
func urlSecrets(u, token string) []string {
	out := []string{token}
	if p, err := url.Parse(u); err == nil {
		if pw, ok := p.User.Password(); ok {
			out = append(out, pw)
		}
		if p.RawQuery != "" {
			out = append(out, p.RawQuery)
		}
	}
	return out
}
