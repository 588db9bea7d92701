package egress

import (
	"context"
	"log/slog"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Kinds of Event.
const (
	KindConnect = "connect" // an HTTP CONNECT tunnel through the proxy
	KindHTTP    = "http"    // a plain HTTP request through the proxy (or to port 80 by DNS)
	KindTLS     = "tls"     // a TLS connection to port 443 reached by vial's DNS answer, not the proxy
	KindDNS     = "dns"     // a query to vial's DNS responder
	KindFetch   = "fetch"   // a request vial made itself (Client: http_request, fetch_url)
)

// Event is one egress decision: a connection or request allowed or
// refused, or a DNS query answered or refused. Allowed connections are
// reported once, when they end, with the bytes moved; refusals at once.
type Event struct {
	Time    time.Time // when the connection, request or query began
	Network string    // the sandbox network's id; "" for a Client
	Kind    string    // Kind* above
	Host    string    // the name (or literal) the client asked for
	Port    int       // 0 for DNS
	Allowed bool
	// Reason says why: the rule that allowed it, or why it was refused
	// ("not in allowed_hosts", "blocked by ...", "TLS server name ... does
	// not match ...", "it resolves only to a private address ...").
	Reason string
	// Addr is the upstream address dialed ("203.0.113.7:443"), "" when
	// none was.
	Addr string
	// Up and Down count the bytes sent to and received from upstream
	// (payload through a tunnel; bodies for a proxied HTTP request).
	Up, Down int64
	Duration time.Duration
	// Err says how an allowed connection failed (the upstream could not
	// be reached, it hung up, ...); "" when it ended normally.
	Err string
	// Query is the DNS query type ("A", "AAAA", ...) for KindDNS.
	Query string
}

// LogValue makes an Event print as one structured log record.
func (e Event) LogValue() slog.Value {
	attrs := []slog.Attr{
		slog.String("kind", e.Kind), slog.String("host", e.Host), slog.Bool("allowed", e.Allowed),
		slog.String("reason", e.Reason),
	}
	if e.Network != "" {
		attrs = append(attrs, slog.String("network", e.Network))
	}
	if e.Port != 0 {
		attrs = append(attrs, slog.Int("port", e.Port))
	}
	if e.Query != "" {
		attrs = append(attrs, slog.String("query", e.Query))
	}
	if e.Addr != "" {
		attrs = append(attrs, slog.String("addr", e.Addr))
	}
	if e.Up != 0 || e.Down != 0 {
		attrs = append(attrs, slog.Int64("up", e.Up), slog.Int64("down", e.Down))
	}
	if e.Duration != 0 {
		attrs = append(attrs, slog.Duration("duration", e.Duration))
	}
	if e.Err != "" {
		attrs = append(attrs, slog.String("err", e.Err))
	}
	return slog.GroupValue(attrs...)
}

// reporter sends events to the caller's hook and the log.
type reporter struct {
	network string
	hook    func(Event)
	log     *slog.Logger

	limit      *rate.Limiter // of log lines, see logRate
	suppressed atomic.Int64  // lines not written since the last one
}

func newReporter(network string, hook func(Event), log *slog.Logger) *reporter {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &reporter{network: network, hook: hook, log: log, limit: rate.NewLimiter(logRate, logBurst)}
}

// A sandbox decides how many events it causes: a loop of refused
// connections would write vial's log as fast as it can. Lines beyond
// logBurst at once, logRate a second on average, are not written; the
// next line that is says how many were left out. The hook still sees every
// event (counting is cheap; the audit log bounds its own records).
const (
	logRate  = 50
	logBurst = 200
)

func (r *reporter) report(e Event) {
	e.Network = r.network
	if r.hook != nil {
		r.hook(e)
	}
	// Every refusal is worth a line; allowed DNS answers are routine.
	level := slog.LevelInfo
	if e.Allowed && e.Kind == KindDNS {
		level = slog.LevelDebug
	}
	if !r.log.Enabled(context.Background(), level) {
		return
	}
	if !r.limit.Allow() {
		r.suppressed.Add(1)
		return
	}
	if n := r.suppressed.Swap(0); n > 0 {
		r.log.Log(context.Background(), level, "egress", "event", e, "not_logged_before", n)
		return
	}
	r.log.Log(context.Background(), level, "egress", "event", e)
}
