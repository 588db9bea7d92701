package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vial-run/vial/api"
	"github.com/vial-run/vial/mcp"
	"github.com/vial-run/vial/observe"
	"github.com/vial-run/vial/observe/audit"
	"github.com/vial-run/vial/observe/metrics"
)

// auditOff is the --audit-dir value that keeps no audit log.
const auditOff = "none"

// defaultRetentionDays is [logging] retention_days when no configuration
// is loaded (the configuration's own default).
const defaultRetentionDays = 7

// MetricsURI is the MCP resource of the metrics snapshot.
const MetricsURI = "vial://metrics"

// observability is what vial serve observes itself with: the event bus
// the service publishes on, the metrics and the audit log subscribed to
// it.
type observability struct {
	bus     *observe.Bus
	metrics *metrics.Metrics
	audit   *audit.Log // nil: no audit log
}

// openObservability creates the bus and subscribes the metrics and (unless
// dir is auditOff) the audit log: dir "" means <state-dir>/audit.
func openObservability(g *globals, dir string, retentionDays int, secrets []string) (*observability, error) {
	o := &observability{bus: &observe.Bus{}}
	if dir != auditOff {
		if dir == "" {
			// The state directory is made as the engine makes it (0711:
			// local mode's unprivileged drivers pass through it to their
			// workspaces), before the audit log makes its own inside.
			if err := os.MkdirAll(g.StateDir, 0o711); err != nil {
				return nil, err
			}
			dir = filepath.Join(g.StateDir, "audit")
		}
		abs, err := filepath.Abs(dir)
		if err != nil {
			return nil, err
		}
		o.audit, err = audit.Open(audit.Options{Dir: abs, RetentionDays: retentionDays, Secrets: secrets, Log: g.Log})
		if err != nil {
			return nil, err
		}
		o.audit.Subscribe(o.bus)
		g.Log.Info("audit log", "dir", abs, "retention_days", retentionDays)
	}
	mo := metrics.Options{Version: version, Process: true}
	if o.audit != nil {
		mo.Audit = o.audit.Stats
	}
	o.metrics = metrics.New(mo)
	o.metrics.Subscribe(o.bus)
	return o, nil
}

// resource is the metrics snapshot as an MCP resource.
func (o *observability) resource() mcp.Resource {
	return mcp.Resource{
		URI:         MetricsURI,
		Name:        "metrics",
		Description: "vial's execution metrics as JSON: total, successful and failed executions, total execution time and success rate; calls by tool and outcome; sandboxes; OOM kills; timeouts; policy and egress decisions.",
		MIMEType:    "application/json",
		Read:        func(context.Context) ([]byte, error) { return o.metrics.JSON() },
	}
}

// close writes what the audit log still holds, within a bound.
func (o *observability) close(g *globals) {
	if o.audit == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := o.audit.Close(ctx); err != nil {
		g.Log.Error("closing the audit log", "error", err)
	}
}

// metricsAuth guards /metrics. The metrics tell how busy vial is, which
// tools are called, how often programs fail: activity an outsider should
// not watch, though they carry no code, names or arguments. A request must
// carry "Authorization: Bearer T" for one of tokens (compared in constant
// time): the operator's metrics token (for a scraper, which then holds no
// power to run code) and the MCP token (whose holder can already read the
// same figures as the vial://metrics resource). Other tokens, such as a
// planned operator token for the REST API, can be added to the list.
//
// With no token at all, the endpoint is open, which the caller allows only
// on a loopback listener; requests must then also name a loopback host,
// so a web page cannot read it through DNS rebinding.
func metricsAuth(tokens []string, h http.Handler) http.Handler {
	var want [][]byte
	for _, t := range tokens {
		if t != "" {
			want = append(want, []byte("Bearer "+t))
		}
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(want) == 0 {
			if !loopbackHost(r.Host) {
				http.Error(w, "forbidden: this metrics endpoint answers loopback host names only", http.StatusForbidden)
				return
			}
			h.ServeHTTP(w, r)
			return
		}
		got := []byte(r.Header.Get("Authorization"))
		ok := 0
		for _, t := range want {
			ok |= subtle.ConstantTimeCompare(got, t)
		}
		if ok != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vial metrics"`)
			http.Error(w, "unauthorized: /metrics needs a bearer token (the metrics token, or the MCP token)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// loopbackHost reports whether a Host header names the loopback
// interface.
func loopbackHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.Trim(host, "[]")
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// metricsToken reads the scrapers' token from file, else
// $VIAL_METRICS_TOKEN; "" when neither is given.
func metricsToken(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("reading the metrics token: %w", err)
		}
		tok := strings.TrimSpace(string(b))
		if len(tok) < 16 {
			return "", fmt.Errorf("the metrics token in %s is shorter than 16 characters", file)
		}
		return tok, nil
	}
	if tok := strings.TrimSpace(os.Getenv("VIAL_METRICS_TOKEN")); tok != "" {
		if len(tok) < 16 {
			return "", errors.New("$VIAL_METRICS_TOKEN is shorter than 16 characters")
		}
		return tok, nil
	}
	return "", nil
}

// listenMetrics opens the --metrics listener. Without any token it must be
// on a loopback address: an open endpoint any host can reach would show
// vial's activity to anyone.
func listenMetrics(addr string, tokens []string) (net.Listener, error) {
	if !anyToken(tokens) && !loopback(addr) {
		return nil, fmt.Errorf("--metrics %s: serving metrics on a non-loopback address needs a token (--metrics-token-file or $VIAL_METRICS_TOKEN)", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listening for metrics on %s: %w", addr, err)
	}
	return ln, nil
}

func anyToken(tokens []string) bool {
	for _, t := range tokens {
		if t != "" {
			return true
		}
	}
	return false
}

// serveMetrics serves /metrics on ln until ctx is done.
func serveMetrics(ctx context.Context, g *globals, ln net.Listener, h http.Handler) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", h)
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          log.New(slogWriter{g.Log}, "", 0),
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	g.Log.Info("serving metrics", "addr", ln.Addr().String(), "path", "/metrics")
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		g.Log.Error("serving metrics", "error", err)
	}
}

// slogWriter adapts net/http's error log to slog.
type slogWriter struct{ log *slog.Logger }

func (w slogWriter) Write(p []byte) (int, error) {
	w.log.Warn("metrics listener", "message", strings.TrimSpace(string(p)))
	return len(p), nil
}

// auditSource is the audit log as the API reads its tail; nil (not a nil
// *audit.Log in an interface) when there is none.
func (o *observability) auditSource() api.AuditSource {
	if o.audit == nil {
		return nil
	}
	return o.audit
}
