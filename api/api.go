package api

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/containerd/errdefs"
)

// DefaultMaxBodyBytes bounds a request body unless Options say otherwise:
// an agent file is a few kilobytes.
const DefaultMaxBodyBytes = 1 << 20

// Options configure the API. Token is required; a nil source makes its
// endpoints answer 501 Not Implemented.
type Options struct {
	// Token is the operator's token (at least 16 characters). It must not
	// be the MCP clients' token: cmd/vial refuses to start with both the
	// same.
	Token string
	// Config serves /api/v1/execution.
	Config Config
	// AllowWrites lets PUT /agents/{id}/config write agent files; without
	// it PUT answers 403. The operator enables it (vial serve
	// --api-allow-writes).
	AllowWrites bool
	// Contexts lists and stops every session's contexts.
	Contexts  Contexts
	Approvals Approvals
	Metrics   MetricsSource
	Audit     AuditSource
	Images    ImageBuilder
	// Version is reported by /api/v1/status.
	Version string
	// MaxBodyBytes bounds a request body (default DefaultMaxBodyBytes).
	MaxBodyBytes int64
	// Log receives failures that are not about the request; nil discards.
	Log *slog.Logger
}

// API serves /api/. It is an http.Handler, safe for concurrent use; Close
// cancels a running image build.
type API struct {
	opts    Options
	cfg     Config
	ctxs    Contexts
	appr    Approvals
	metrics MetricsSource
	audit   AuditSource
	images  ImageBuilder
	log     *slog.Logger
	maxBody int64
	mux     *http.ServeMux
	handler http.Handler
	builds  *builds
	cancel  context.CancelFunc
}

// Route is one endpoint.
type Route struct {
	Method, Pattern string
	// Public routes need no token (only the OpenAPI document).
	Public bool
}

type route struct {
	Route
	h func(*API, http.ResponseWriter, *http.Request) error
}

// routes is every endpoint; the OpenAPI document describes each (a test
// checks both ways).
var routes = []route{
	{Route{"GET", "/api/v1/openapi.json", true}, (*API).openAPI},
	{Route{"GET", "/api/v1/status", false}, (*API).status},

	// Seed 001, section 6.1.
	{Route{"GET", "/api/v1/execution/templates", false}, (*API).templates},
	{Route{"GET", "/api/v1/execution/templates/{name}", false}, (*API).template},
	{Route{"GET", "/api/v1/execution/agents/{id}/config", false}, (*API).agentConfig},
	{Route{"PUT", "/api/v1/execution/agents/{id}/config", false}, (*API).putAgentConfig},
	{Route{"POST", "/api/v1/execution/validate", false}, (*API).validate},
	{Route{"POST", "/api/v1/execution/agents/{id}/preview", false}, (*API).preview},
	{Route{"GET", "/api/v1/execution/tools", false}, (*API).tools},
	{Route{"GET", "/api/v1/execution/mcp/servers", false}, (*API).mcpServers},
	// The page needs the list of agents.
	{Route{"GET", "/api/v1/execution/agents", false}, (*API).agents},

	// The live server.
	{Route{"GET", "/api/v1/contexts", false}, (*API).contexts},
	{Route{"DELETE", "/api/v1/contexts/{id}", false}, (*API).stopContext},
	{Route{"GET", "/api/v1/approvals", false}, (*API).approvals},
	{Route{"POST", "/api/v1/approvals/{id}/approve", false}, (*API).approve},
	{Route{"POST", "/api/v1/approvals/{id}/deny", false}, (*API).deny},
	{Route{"GET", "/api/v1/metrics", false}, (*API).metricsText},
	{Route{"GET", "/api/v1/audit", false}, (*API).auditTail},
	{Route{"GET", "/api/v1/images", false}, (*API).listImages},
	{Route{"POST", "/api/v1/images/builds", false}, (*API).startBuild},
	{Route{"GET", "/api/v1/images/builds/{id}", false}, (*API).buildStatus},
	{Route{"GET", "/api/v1/images/builds/{id}/events", false}, (*API).buildEvents},
	{Route{"DELETE", "/api/v1/images/builds/{id}", false}, (*API).cancelBuild},
}

// Routes lists every endpoint the API serves.
func Routes() []Route {
	out := make([]Route, len(routes))
	for i, r := range routes {
		out[i] = r.Route
	}
	return out
}

// New checks o and returns the API.
func New(o Options) (*API, error) {
	if len(o.Token) < 16 {
		return nil, fmt.Errorf("the operator token must be at least 16 characters: %w", errdefs.ErrInvalidArgument)
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = DefaultMaxBodyBytes
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &API{opts: o, cfg: o.Config, ctxs: o.Contexts, appr: o.Approvals, metrics: o.Metrics, audit: o.Audit,
		images: o.Images, log: log, maxBody: o.MaxBodyBytes, mux: http.NewServeMux(), cancel: cancel}
	a.builds = &builds{builder: o.Images, base: ctx}
	authed := http.NewServeMux()
	for _, rt := range routes {
		h := a.wrap(rt.h)
		if rt.Public {
			a.mux.Handle(rt.Method+" "+rt.Pattern, h)
		} else {
			authed.Handle(rt.Method+" "+rt.Pattern, h)
		}
	}
	authed.Handle("/api/", http.HandlerFunc(a.notFound))
	a.mux.Handle("/api/", requireToken(o.Token, crossOrigin(authed)))
	a.handler = Guard(a.mux)
	return a, nil
}

// ServeHTTP serves the API; mount it at /api/.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) { a.handler.ServeHTTP(w, r) }

// Close cancels a running image build and waits for it to stop, at most
// closeWait.
func (a *API) Close() {
	a.cancel()
	if b := a.builds.lastBuild(); b != nil {
		select {
		case <-b.finished:
		case <-time.After(closeWait):
			a.log.Warn("an image build did not stop in time", "build", b.ID, "waited", closeWait)
		}
	}
}

// closeWait bounds how long Close waits for a cancelled build.
const closeWait = 15 * time.Second

// wrap turns a handler that returns an error into an http.Handler.
func (a *API) wrap(h func(*API, http.ResponseWriter, *http.Request) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := h(a, w, r); err != nil {
			writeError(w, r, a.log, err)
		}
	})
}

// notFound answers a path no route matches: 405 with Allow when another
// method would match, 404 otherwise.
func (a *API) notFound(w http.ResponseWriter, r *http.Request) {
	var allow []string
	for _, m := range []string{"GET", "PUT", "POST", "DELETE"} {
		for _, rt := range routes {
			if rt.Method == m && matches(rt.Pattern, r.URL.Path) {
				allow = append(allow, m)
				break
			}
		}
	}
	if len(allow) > 0 {
		w.Header().Set("Allow", strings.Join(allow, ", "))
		writeJSON(w, http.StatusMethodNotAllowed, errorBody{Error: fmt.Sprintf("%s is not allowed here (allowed: %s)", r.Method, strings.Join(allow, ", ")), Class: "method not allowed"})
		return
	}
	writeJSON(w, http.StatusNotFound, errorBody{Error: "no such endpoint (GET /api/v1/openapi.json lists them)", Class: "not found"})
}

// matches reports whether path matches a route pattern's segments, with
// {x} matching any one segment.
func matches(pattern, path string) bool {
	ps, xs := strings.Split(pattern, "/"), strings.Split(path, "/")
	if len(ps) != len(xs) {
		return false
	}
	for i := range ps {
		if !strings.HasPrefix(ps[i], "{") && ps[i] != xs[i] {
			return false
		}
	}
	return true
}

// readBody reads a request body of at most maxBody bytes.
func (a *API) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	r.Body = http.MaxBytesReader(w, r.Body, a.maxBody)
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			return nil, err
		}
		return nil, invalidf("reading the request body: %v", err)
	}
	return b, nil
}

// unavailable is the error of an endpoint whose source is not wired.
func unavailable(what string) error {
	return fmt.Errorf("%s: not available on this server: %w", what, errdefs.ErrNotImplemented)
}

// answeredBy names the operator who answered an approval, for the audit
// record.
func answeredBy(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return "operator (api, from " + host + ")"
}

//go:embed openapi.json
var openAPIDoc []byte

// OpenAPI returns the OpenAPI document of the API.
func OpenAPI() []byte { return openAPIDoc }

func (a *API) openAPI(w http.ResponseWriter, r *http.Request) error {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Write(openAPIDoc)
	return nil
}

// status says what this server offers.
type statusBody struct {
	Version  string          `json:"version"`
	Writes   bool            `json:"writes"`
	Features map[string]bool `json:"features"`
}

func (a *API) status(w http.ResponseWriter, r *http.Request) error {
	writeJSON(w, http.StatusOK, statusBody{
		Version: a.opts.Version,
		Writes:  a.opts.AllowWrites && a.cfg != nil,
		Features: map[string]bool{
			"config":    a.cfg != nil,
			"contexts":  a.ctxs != nil,
			"approvals": a.appr != nil,
			"metrics":   a.metrics != nil,
			"audit":     a.audit != nil,
			"images":    a.images != nil,
		},
	})
	return nil
}
