package api

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/service"
	"github.com/vial-run/vial/service/servicetest"
)

const token = "operator-token-0123456789abcdef"

// fakeConfig records the calls that reach it and answers from its fields.
type fakeConfig struct {
	mu    sync.Mutex
	calls []string
	err   error // returned by every method when set

	validation *Validation
	resolve    func(overrides map[string]any) *Resolved
}

func (f *fakeConfig) record(format string, args ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
	return f.err
}

func (f *fakeConfig) called() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

func (f *fakeConfig) Templates(ctx context.Context) ([]Template, error) {
	return []Template{{Name: "python-dev", Tags: []string{}, File: "config/environments/python-dev.toml"}}, f.record("Templates")
}
func (f *fakeConfig) Template(ctx context.Context, name string) (*TemplateDetail, error) {
	return &TemplateDetail{Template: Template{Name: name}, Resolved: &Resolved{}}, f.record("Template %s", name)
}
func (f *fakeConfig) Agents(ctx context.Context) ([]Agent, error) { return nil, f.record("Agents") }
func (f *fakeConfig) AgentFile(ctx context.Context, id string) (*AgentFile, error) {
	return &AgentFile{ID: id, TOML: "[sandbox]\n", SHA256: "abc"}, f.record("AgentFile %s", id)
}
func (f *fakeConfig) Resolve(ctx context.Context, id string, overrides map[string]any) (*Resolved, error) {
	if err := f.record("Resolve %s %v", id, overrides); err != nil {
		return nil, err
	}
	if f.resolve != nil {
		return f.resolve(overrides), nil
	}
	return &Resolved{AgentID: id}, nil
}
func (f *fakeConfig) Validate(ctx context.Context, t ValidateTarget, body []byte) (*Validation, error) {
	if err := f.record("Validate %+v %q", t, body); err != nil {
		return nil, err
	}
	if f.validation != nil {
		v := *f.validation
		v.Problems = append([]Problem(nil), v.Problems...)
		return &v, nil
	}
	return &Validation{Valid: true, File: "agents/x/agent.toml"}, nil
}
func (f *fakeConfig) WriteAgentFile(ctx context.Context, id string, body []byte, ifMatch string) (*AgentFile, error) {
	if err := f.record("WriteAgentFile %s %q %s", id, body, ifMatch); err != nil {
		return nil, err
	}
	return &AgentFile{ID: id, TOML: string(body), SHA256: "new"}, nil
}
func (f *fakeConfig) Tools(ctx context.Context, agent string) ([]Tool, error) {
	return nil, f.record("Tools %s", agent)
}
func (f *fakeConfig) MCPServers(ctx context.Context, agent string) ([]MCPServer, error) {
	return nil, f.record("MCPServers %s", agent)
}

// newServer serves a over a loopback listener, as vial serve does.
func newServer(t *testing.T, o Options) (*httptest.Server, *API) {
	t.Helper()
	if o.Token == "" {
		o.Token = token
	}
	a, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	mux := http.NewServeMux()
	mux.Handle("/api/", a)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv, a
}

type req struct {
	method, path, body string
	hdr                map[string]string
	noToken            bool
}

func do(t *testing.T, srv *httptest.Server, r req) (*http.Response, string) {
	t.Helper()
	hr, err := http.NewRequest(r.method, srv.URL+r.path, strings.NewReader(r.body))
	if err != nil {
		t.Fatal(err)
	}
	if !r.noToken {
		hr.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range r.hdr {
		if k == "Host" {
			hr.Host = v
			continue
		}
		hr.Header.Set(k, v)
	}
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestNeedsOperatorToken(t *testing.T) {
	f := &fakeConfig{}
	srv, _ := newServer(t, Options{Config: f})
	for _, tc := range []struct {
		name, auth string
		want       int
	}{
		{"none", "", 401},
		{"mcp client token", "Bearer mcp-client-token-0123456789abcd", 401},
		{"token without scheme", token, 401},
		{"token with a suffix", "Bearer " + token + "x", 401},
		{"prefix of the token", "Bearer " + token[:20], 401},
		{"basic", "Basic " + token, 401},
		{"operator token", "Bearer " + token, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, body := do(t, srv, req{method: "GET", path: "/api/v1/execution/templates", noToken: true, hdr: map[string]string{"Authorization": tc.auth}})
			if res.StatusCode != tc.want {
				t.Fatalf("status %d, want %d: %s", res.StatusCode, tc.want, body)
			}
			if tc.want == 401 && !strings.Contains(res.Header.Get("WWW-Authenticate"), "Bearer") {
				t.Errorf("no Bearer challenge: %v", res.Header)
			}
		})
	}
	if got := f.called(); len(got) != 1 {
		t.Errorf("unauthenticated requests reached the configuration: %q", got)
	}
	// Unknown paths are 401 too without the token: nothing is learned.
	if res, _ := do(t, srv, req{method: "GET", path: "/api/v1/nope", noToken: true}); res.StatusCode != 401 {
		t.Errorf("unknown path without token: %d", res.StatusCode)
	}
	// The OpenAPI document is public.
	if res, body := do(t, srv, req{method: "GET", path: "/api/v1/openapi.json", noToken: true}); res.StatusCode != 200 || !json.Valid([]byte(body)) {
		t.Errorf("openapi: %d", res.StatusCode)
	}
	if _, err := New(Options{Token: "short"}); err == nil {
		t.Error("a short token was accepted")
	}
}

func TestSecurityHeaders(t *testing.T) {
	srv, _ := newServer(t, Options{Config: &fakeConfig{}})
	for _, r := range []req{
		{method: "GET", path: "/api/v1/execution/templates"},
		{method: "GET", path: "/api/v1/execution/templates", noToken: true},
		{method: "GET", path: "/api/v1/openapi.json"},
		{method: "GET", path: "/api/v1/nope"},
	} {
		res, _ := do(t, srv, r)
		h := res.Header
		if h.Get("X-Frame-Options") != "DENY" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
			!strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") || h.Get("X-Content-Type-Options") != "nosniff" ||
			h.Get("Cache-Control") != "no-store" || h.Get("Referrer-Policy") != "no-referrer" {
			t.Errorf("%s %s (%d): headers %v", r.method, r.path, res.StatusCode, h)
		}
	}
}

// TestCrossOrigin: state-changing requests a browser marks as coming from
// another site are refused even with the token.
func TestCrossOrigin(t *testing.T) {
	f := &fakeConfig{}
	srv, _ := newServer(t, Options{Config: f, AllowWrites: true})
	body := "[sandbox]\ntimeout_seconds = 60\n"
	for _, tc := range []struct {
		name string
		hdr  map[string]string
		want int
	}{
		{"sec-fetch-site cross-site", map[string]string{"Sec-Fetch-Site": "cross-site"}, 403},
		{"sec-fetch-site same-site", map[string]string{"Sec-Fetch-Site": "same-site"}, 403},
		{"foreign origin", map[string]string{"Origin": "http://evil.example"}, 403},
		{"same origin", map[string]string{"Sec-Fetch-Site": "same-origin"}, 200},
		{"no browser headers (curl)", nil, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, r := range []req{
				{method: "PUT", path: "/api/v1/execution/agents/a/config", body: body},
				{method: "POST", path: "/api/v1/execution/validate", body: body},
			} {
				r.hdr = tc.hdr
				if res, b := do(t, srv, r); res.StatusCode != tc.want {
					t.Errorf("%s %s: %d, want %d: %s", r.method, r.path, res.StatusCode, tc.want, b)
				}
			}
		})
	}
}

func TestDNSRebinding(t *testing.T) {
	srv, _ := newServer(t, Options{Config: &fakeConfig{}})
	for host, want := range map[string]int{
		"evil.example":    421,
		"evil.example:80": 421,
		"127.0.0.1:1":     200,
		"localhost:1":     200,
		"[::1]:1":         200,
	} {
		res, body := do(t, srv, req{method: "GET", path: "/api/v1/execution/templates", hdr: map[string]string{"Host": host}})
		if res.StatusCode != want {
			t.Errorf("Host %s: %d, want %d: %s", host, res.StatusCode, want, body)
		}
	}
}

// TestHostileNames: names from the URL are checked before anything that
// could make a path of them sees them.
func TestHostileNames(t *testing.T) {
	f := &fakeConfig{}
	srv, _ := newServer(t, Options{Config: f, AllowWrites: true, Contexts: &fakeContexts{}, Approvals: &fakeApprovals{}, Images: &fakeBuilder{}})
	bad := []string{"..%2Fx", "..", "%2E%2E", "%00", "a%00b", strings.Repeat("a", 129), "a%2Fb", ".hidden", "-x", "a%20b", "%E2%80%AEx", "a..b"}
	paths := []struct{ method, pattern, body string }{
		{"GET", "/api/v1/execution/templates/%s", ""},
		{"GET", "/api/v1/execution/agents/%s/config", ""},
		{"GET", "/api/v1/execution/agents/%s/config?resolve=true", ""},
		{"PUT", "/api/v1/execution/agents/%s/config", "[sandbox]\n"},
		{"POST", "/api/v1/execution/agents/%s/preview", "{}"},
		{"POST", "/api/v1/execution/validate?agent=%s", "[sandbox]\n"},
		{"POST", "/api/v1/execution/validate?template=%s", "[sandbox]\n"},
		{"GET", "/api/v1/execution/tools?agent=%s", ""},
		{"GET", "/api/v1/execution/mcp/servers?agent=%s", ""},
		{"DELETE", "/api/v1/contexts/%s", ""},
		{"POST", "/api/v1/approvals/%s/approve", ""},
		{"POST", "/api/v1/approvals/%s/deny", ""},
		{"GET", "/api/v1/images/builds/%s", ""},
	}
	for _, p := range paths {
		for _, id := range bad {
			path := fmt.Sprintf(p.pattern, id)
			res, body := do(t, srv, req{method: p.method, path: path, body: p.body})
			// ".." and "%2E%2E" as a whole segment are cleaned by the
			// mux first (a redirect, or another route); what matters is
			// that they never reach the configuration.
			if res.StatusCode != 400 && !(id == ".." || id == "%2E%2E") {
				t.Errorf("%s %s: %d, want 400: %s", p.method, path, res.StatusCode, body)
			}
		}
	}
	for _, c := range f.called() {
		t.Errorf("a hostile name reached the configuration: %s", c)
	}
}

func TestBodyLimit(t *testing.T) {
	f := &fakeConfig{}
	srv, _ := newServer(t, Options{Config: f, AllowWrites: true, MaxBodyBytes: 1 << 10})
	big := "# " + strings.Repeat("x", 2<<10) + "\n"
	for _, r := range []req{
		{method: "PUT", path: "/api/v1/execution/agents/a/config", body: big},
		{method: "POST", path: "/api/v1/execution/validate", body: big},
		{method: "POST", path: "/api/v1/execution/agents/a/preview", body: `{"x": "` + strings.Repeat("y", 2<<10) + `"}`},
	} {
		if res, body := do(t, srv, r); res.StatusCode != 413 {
			t.Errorf("%s %s: %d, want 413: %s", r.method, r.path, res.StatusCode, body)
		}
	}
	for _, c := range f.called() {
		if !strings.HasPrefix(c, "Resolve") {
			t.Errorf("an oversized body reached the configuration: %.80s", c)
		}
	}
}

func TestWritesNeedTheFlag(t *testing.T) {
	f := &fakeConfig{}
	srv, _ := newServer(t, Options{Config: f})
	res, body := do(t, srv, req{method: "PUT", path: "/api/v1/execution/agents/a/config", body: "[sandbox]\n"})
	if res.StatusCode != 403 || !strings.Contains(body, "--api-allow-writes") {
		t.Errorf("PUT without writes: %d %s", res.StatusCode, body)
	}
	if len(f.called()) != 0 {
		t.Errorf("reached the configuration: %q", f.called())
	}
	// JSON is refused for PUT: the file is TOML.
	srv2, _ := newServer(t, Options{Config: f, AllowWrites: true})
	if res, body := do(t, srv2, req{method: "PUT", path: "/api/v1/execution/agents/a/config", body: `{"sandbox": {}}`, hdr: map[string]string{"Content-Type": "application/json"}}); res.StatusCode != 400 {
		t.Errorf("PUT JSON: %d %s", res.StatusCode, body)
	}
	// If-Match reaches the configuration without quotes.
	do(t, srv2, req{method: "PUT", path: "/api/v1/execution/agents/a/config", body: "[sandbox]\n", hdr: map[string]string{"If-Match": `"abc123"`}})
	if c := f.called(); len(c) != 1 || !strings.HasSuffix(c[0], " abc123") {
		t.Errorf("calls %q", c)
	}
}

func TestErrorStatuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
		text string // in the body
		hide string // not in the body
	}{
		{"not found", fmt.Errorf("agent \"x\" not found: %w", errdefs.ErrNotFound), 404, `agent \"x\" not found`, ""},
		{"invalid configuration", &ConfigError{Problems: []Problem{{File: "agents/a/agent.toml", Line: 3, Col: 1, Message: "bad"}}}, 422, `"line": 3`, ""},
		{"changed", fmt.Errorf("changed: %w", errdefs.ErrFailedPrecondition), 412, "changed", ""},
		{"conflict", fmt.Errorf("busy: %w", errdefs.ErrConflict), 409, "busy", ""},
		{"internal", errors.New("open /etc/vial/secret/path: permission denied"), 500, "see the server's log", "/etc/vial"},
		{"unavailable", fmt.Errorf("disk /var/lib/vial gone: %w", errdefs.ErrUnavailable), 503, "see the server's log", "/var/lib"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, _ := newServer(t, Options{Config: &fakeConfig{err: tc.err}})
			res, body := do(t, srv, req{method: "GET", path: "/api/v1/execution/agents/a/config"})
			if res.StatusCode != tc.want || !strings.Contains(body, tc.text) || (tc.hide != "" && strings.Contains(body, tc.hide)) {
				t.Errorf("%d %s", res.StatusCode, body)
			}
			if !strings.HasPrefix(res.Header.Get("Content-Type"), "application/json") {
				t.Errorf("content type %q", res.Header.Get("Content-Type"))
			}
		})
	}
}

func TestRoutingErrors(t *testing.T) {
	srv, _ := newServer(t, Options{Config: &fakeConfig{}})
	res, body := do(t, srv, req{method: "DELETE", path: "/api/v1/execution/templates"})
	if res.StatusCode != 405 || res.Header.Get("Allow") != "GET" || !json.Valid([]byte(body)) {
		t.Errorf("DELETE templates: %d %q %s", res.StatusCode, res.Header.Get("Allow"), body)
	}
	res, body = do(t, srv, req{method: "GET", path: "/api/v1/execution/agents/a/nope"})
	if res.StatusCode != 404 || !json.Valid([]byte(body)) {
		t.Errorf("unknown: %d %s", res.StatusCode, body)
	}
	res, body = do(t, srv, req{method: "GET", path: "/api/v1/execution/agents/a/config?resolve=maybe"})
	if res.StatusCode != 400 {
		t.Errorf("resolve=maybe: %d %s", res.StatusCode, body)
	}
}

// TestValidateJSONPositions: problems in a JSON body are shown at the JSON
// key they came from, not at the line of the TOML it was turned into.
func TestValidateJSONPositions(t *testing.T) {
	f := &fakeConfig{validation: &Validation{File: "agents/new-agent/agent.toml", Problems: []Problem{
		{File: "agents/new-agent/agent.toml", Line: 2, Col: 1, Message: `unknown key "timout_seconds" in [sandbox]`},
		{File: "config/execution.toml", Line: 7, Col: 3, Message: "a system problem"},
	}}}
	srv, _ := newServer(t, Options{Config: f})
	body := "{\n  \"sandbox\": {\n    \"mode\": \"docker\",\n    \"timout_seconds\": 60\n  }\n}\n"
	res, out := do(t, srv, req{method: "POST", path: "/api/v1/execution/validate", body: body, hdr: map[string]string{"Content-Type": "application/json"}})
	if res.StatusCode != 422 {
		t.Fatalf("%d %s", res.StatusCode, out)
	}
	var v Validation
	json.Unmarshal([]byte(out), &v)
	want := []Problem{
		{File: "request body", Line: 4, Col: 5, Path: "sandbox.timout_seconds", Message: `unknown key "timout_seconds" in [sandbox]`},
		{File: "config/execution.toml", Line: 7, Col: 3, Message: "a system problem"},
	}
	if fmt.Sprint(v.Problems) != fmt.Sprint(want) {
		t.Errorf("problems\n%v\nwant\n%v", v.Problems, want)
	}
	c := f.called()
	if len(c) != 1 || !strings.Contains(c[0], `"sandbox.mode = \"docker\"\nsandbox.timout_seconds = 60\n"`) {
		t.Errorf("the configuration got %q", c)
	}
	// A JSON syntax error is a 422 at its place, without a call.
	res, out = do(t, srv, req{method: "POST", path: "/api/v1/execution/validate", body: "{\n  \"sandbox\": {,\n}", hdr: map[string]string{"Content-Type": "application/json"}})
	if res.StatusCode != 422 || !strings.Contains(out, `"line": 2`) {
		t.Errorf("syntax: %d %s", res.StatusCode, out)
	}
}

func TestJSONToTOML(t *testing.T) {
	for _, tc := range []struct {
		name, in, out string
		lines         []jsonPos
		err           string
	}{
		{name: "seed validate example", in: `{"sandbox": {"mode": "docker", "timeout_seconds": 60}}`,
			out:   "sandbox.mode = \"docker\"\nsandbox.timeout_seconds = 60\n",
			lines: []jsonPos{{"sandbox.mode", 1, 14}, {"sandbox.timeout_seconds", 1, 32}}},
		{name: "arrays, inline tables, odd keys", in: "{\"tools\": {\"enabled\": [\"a\", \"b\"]},\n \"mcp\": {\"servers\": {\"x y\": {\"url\": \"u\", \"c\": [{\"k\": 1.5}]}}}, \"e\": {}}",
			out: "tools.enabled = [\"a\", \"b\"]\nmcp.servers.\"x y\".url = \"u\"\nmcp.servers.\"x y\".c = [{ k = 1.5 }]\ne = {}\n"},
		{name: "strings escaped", in: `{"a": "q\"\\\n\u0001"}`, out: "a = \"q\\\"\\\\\\n\\u0001\"\n"},
		{name: "null", in: "{\n \"a\": {\"b\": null}}", err: "line 2, column 8: a.b is null"},
		{name: "not an object", in: `[1]`, err: "one JSON object"},
		{name: "trailing data", in: `{} {}`, err: "unexpected data"},
		{name: "truncated", in: `{"a": `, err: "ends early"},
		{name: "too deep", in: strings.Repeat(`{"a":`, 40) + "1" + strings.Repeat("}", 40), err: "nested deeper than 32"},
		{name: "too deep in an array", in: `{"a": ` + strings.Repeat("[", 40) + strings.Repeat("]", 40) + "}", err: "nested deeper than 32"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, lines, err := jsonToTOML([]byte(tc.in))
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if string(out) != tc.out {
				t.Errorf("out\n%s\nwant\n%s", out, tc.out)
			}
			if tc.lines != nil && fmt.Sprint(lines) != fmt.Sprint(tc.lines) {
				t.Errorf("lines %v, want %v", lines, tc.lines)
			}
		})
	}
}

func TestPreviewChanges(t *testing.T) {
	f := &fakeConfig{resolve: func(o map[string]any) *Resolved {
		r := &Resolved{Values: []Value{{Key: "sandbox.timeout_seconds", Value: int64(120), Text: "120", Layer: "agent"}}}
		if o != nil {
			r.Values[0] = Value{Key: "sandbox.timeout_seconds", Value: o["sandbox"].(map[string]any)["timeout_seconds"], Text: "180", Layer: "runtime"}
			r.Values = append(r.Values, Value{Key: "shell.env.DEBUG", Value: "true", Text: `"true"`, Layer: "runtime"})
		}
		return r
	}}
	srv, _ := newServer(t, Options{Config: f})
	res, out := do(t, srv, req{method: "POST", path: "/api/v1/execution/agents/research-assistant/preview",
		body: `{"sandbox": {"timeout_seconds": 180}, "shell": {"env": {"DEBUG": "true"}}}`, hdr: map[string]string{"Content-Type": "application/json"}})
	if res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, out)
	}
	var p Preview
	json.Unmarshal([]byte(out), &p)
	if fmt.Sprint(p.Changes) != "[{sandbox.timeout_seconds 120 180} {shell.env.DEBUG <nil> true}]" {
		t.Errorf("changes %v", p.Changes)
	}
	// Integers reach the configuration as int64.
	if c := f.called(); len(c) != 2 || c[1] != "Resolve research-assistant map[sandbox:map[timeout_seconds:180] shell:map[env:map[DEBUG:true]]]" {
		t.Errorf("calls %q", c)
	}
	for _, bad := range []string{`[1]`, `{"a": null}`, `{"a": 1} x`, "[sandbox]\n"} {
		if res, out := do(t, srv, req{method: "POST", path: "/api/v1/execution/agents/a/preview", body: bad}); res.StatusCode != 400 {
			t.Errorf("%q: %d %s", bad, res.StatusCode, out)
		}
	}
}

// fakeContexts is a Contexts of its own, for tests that need no service.
type fakeContexts struct{}

func (fakeContexts) Contexts() []service.ContextInfo { return nil }
func (fakeContexts) StopContext(id string) error {
	return fmt.Errorf("no context %s: %w", id, errdefs.ErrNotFound)
}

// TestContexts runs against the real service on the fake provider: the
// operator sees every session's contexts and stops any of them.
func TestContexts(t *testing.T) {
	svc, err := service.New(service.Options{Provider: servicetest.New(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(context.Background()) })
	var ids []string
	for _, s := range []string{"s-alice", "s-bob"} {
		sess, err := svc.OpenSession(service.SessionInfo{ID: s, Transport: "http"})
		if err != nil {
			t.Fatal(err)
		}
		info, err := sess.CreateContext(t.Context(), service.CreateRequest{Language: service.Python, Name: "work"})
		if err != nil {
			t.Fatal(err)
		}
		ids = append(ids, info.ID)
	}
	srv, _ := newServer(t, Options{Contexts: svc})
	res, out := do(t, srv, req{method: "GET", path: "/api/v1/contexts"})
	var list struct{ Contexts []Context }
	json.Unmarshal([]byte(out), &list)
	if res.StatusCode != 200 || len(list.Contexts) != 2 || list.Contexts[0].Session != "s-alice" || list.Contexts[1].Session != "s-bob" || list.Contexts[0].Language != "python" {
		t.Fatalf("%d %s", res.StatusCode, out)
	}
	if res, out := do(t, srv, req{method: "DELETE", path: "/api/v1/contexts/" + ids[1]}); res.StatusCode != 200 {
		t.Fatalf("stop: %d %s", res.StatusCode, out)
	}
	if got := svc.Contexts(); len(got) != 1 || got[0].ID != ids[0] {
		t.Errorf("left: %+v", got)
	}
	if res, out := do(t, srv, req{method: "DELETE", path: "/api/v1/contexts/" + ids[1]}); res.StatusCode != 404 {
		t.Errorf("stop again: %d %s", res.StatusCode, out)
	}
	if res, _ := do(t, srv, req{method: "DELETE", path: "/api/v1/contexts/" + ids[0], hdr: map[string]string{"Sec-Fetch-Site": "cross-site"}}); res.StatusCode != 403 {
		t.Errorf("cross-site stop: %d", res.StatusCode)
	}
}

type fakeApprovals struct {
	mu      sync.Mutex
	pending []Approval
	by      []string
}

func (f *fakeApprovals) Pending() []Approval {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Approval(nil), f.pending...)
}

func (f *fakeApprovals) Answer(id string, approve bool, by string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i, a := range f.pending {
		if a.ID == id {
			f.pending = append(f.pending[:i], f.pending[i+1:]...)
			f.by = append(f.by, fmt.Sprintf("%s %v %s", id, approve, by))
			return nil
		}
	}
	return fmt.Errorf("approval %s is not pending: %w", id, errdefs.ErrNotFound)
}

func TestApprovals(t *testing.T) {
	f := &fakeApprovals{pending: []Approval{
		{ID: "ap-1", Session: "s-1", Tool: "write_file", Summary: "write_file notes.txt\ncontent:\nhello", Created: time.Now(), Expires: time.Now().Add(time.Minute)},
		{ID: "ap-2", Session: "s-1", Tool: "run_shell", Summary: "rm -rf build", Created: time.Now(), Expires: time.Now().Add(time.Minute)},
	}}
	srv, _ := newServer(t, Options{Approvals: f})
	res, out := do(t, srv, req{method: "GET", path: "/api/v1/approvals"})
	if res.StatusCode != 200 || !strings.Contains(out, `"summary": "write_file notes.txt\ncontent:\nhello"`) {
		t.Fatalf("%d %s", res.StatusCode, out)
	}
	if res, out := do(t, srv, req{method: "POST", path: "/api/v1/approvals/ap-1/approve"}); res.StatusCode != 200 || !strings.Contains(out, `"approved": true`) {
		t.Errorf("approve: %d %s", res.StatusCode, out)
	}
	if res, out := do(t, srv, req{method: "POST", path: "/api/v1/approvals/ap-2/deny"}); res.StatusCode != 200 || !strings.Contains(out, `"approved": false`) {
		t.Errorf("deny: %d %s", res.StatusCode, out)
	}
	if res, _ := do(t, srv, req{method: "POST", path: "/api/v1/approvals/ap-1/approve"}); res.StatusCode != 404 {
		t.Errorf("approve twice: %d", res.StatusCode)
	}
	if res, _ := do(t, srv, req{method: "POST", path: "/api/v1/approvals/ap-3/approve", hdr: map[string]string{"Origin": "http://evil.example"}}); res.StatusCode != 403 {
		t.Errorf("cross-origin approve: %d", res.StatusCode)
	}
	if len(f.by) != 2 || !strings.HasPrefix(f.by[0], "ap-1 true operator (api, from 127.0.0.1)") {
		t.Errorf("answers %q", f.by)
	}
}

type fakeSource struct{ lines int }

func (f fakeSource) Metrics() ([]byte, error) { return []byte("vial_calls_total 3\n"), nil }
func (f fakeSource) AuditTail(n int) ([]byte, error) {
	var b strings.Builder
	for i := range f.lines {
		fmt.Fprintf(&b, `{"i": %d}`+"\n", i)
	}
	b.WriteString("not json\n")
	return []byte(b.String()), nil
}

func TestMetricsAndAudit(t *testing.T) {
	srv, _ := newServer(t, Options{Metrics: fakeSource{}, Audit: fakeSource{lines: 20}})
	res, out := do(t, srv, req{method: "GET", path: "/api/v1/metrics"})
	if res.StatusCode != 200 || out != "vial_calls_total 3\n" || !strings.HasPrefix(res.Header.Get("Content-Type"), "text/plain") {
		t.Errorf("metrics: %d %q", res.StatusCode, out)
	}
	res, out = do(t, srv, req{method: "GET", path: "/api/v1/audit?n=5"})
	var a struct{ Entries []any }
	json.Unmarshal([]byte(out), &a)
	if res.StatusCode != 200 || len(a.Entries) != 5 || a.Entries[4] != "not json" {
		t.Errorf("audit: %d %s", res.StatusCode, out)
	}
	for _, n := range []string{"0", "1001", "-1", "x", "99999999999999999999"} {
		if res, _ := do(t, srv, req{method: "GET", path: "/api/v1/audit?n=" + n}); res.StatusCode != 400 {
			t.Errorf("n=%s: %d", n, res.StatusCode)
		}
	}
}

func TestUnwiredSourcesAnswer501(t *testing.T) {
	srv, _ := newServer(t, Options{})
	for _, r := range []req{
		{method: "GET", path: "/api/v1/execution/templates"},
		{method: "GET", path: "/api/v1/contexts"},
		{method: "GET", path: "/api/v1/approvals"},
		{method: "GET", path: "/api/v1/metrics"},
		{method: "GET", path: "/api/v1/audit"},
		{method: "GET", path: "/api/v1/images"},
	} {
		if res, out := do(t, srv, r); res.StatusCode != 501 {
			t.Errorf("%s: %d %s", r.path, res.StatusCode, out)
		}
	}
	res, out := do(t, srv, req{method: "GET", path: "/api/v1/status"})
	if res.StatusCode != 200 || !strings.Contains(out, `"approvals": false`) {
		t.Errorf("status: %d %s", res.StatusCode, out)
	}
}

// fakeBuilder writes lines lines of width bytes, then waits for release
// (if set) before it ends.
type fakeBuilder struct {
	lines, width int
	release      chan struct{}
}

func (f *fakeBuilder) Recipes() []string                           { return []string{"minimal", "python"} }
func (f *fakeBuilder) Images(ctx context.Context) ([]Image, error) { return nil, nil }
func (f *fakeBuilder) Build(ctx context.Context, r BuildRequest, w io.Writer) (*Image, error) {
	for i := range f.lines {
		fmt.Fprintf(w, "%d %s\n", i, strings.Repeat("x", f.width))
	}
	fmt.Fprint(w, "partial line without newline")
	if f.release != nil {
		select {
		case <-f.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return &Image{Name: r.Recipe, Digest: "sha256:00"}, nil
}

// readEvents reads a server-sent event stream to its end.
func readEvents(t *testing.T, srv *httptest.Server, path string) (events []string, data []string) {
	t.Helper()
	hr, _ := http.NewRequest("GET", srv.URL+path, nil)
	hr.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
		t.Fatalf("events: %d %v", res.StatusCode, res.Header)
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(nil, 1<<20)
	ev, d := "", []string{}
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "event: "):
			ev = line[7:]
		case strings.HasPrefix(line, "data: "):
			d = append(d, line[6:])
		case line == "" && ev != "":
			events, data = append(events, ev), append(data, strings.Join(d, "\n"))
			ev, d = "", nil
		}
	}
	return events, data
}

func TestImageBuildStreams(t *testing.T) {
	b := &fakeBuilder{lines: 3, width: 5, release: make(chan struct{})}
	srv, _ := newServer(t, Options{Images: b})
	res, out := do(t, srv, req{method: "POST", path: "/api/v1/images/builds", body: `{"recipe": "python"}`})
	if res.StatusCode != 202 {
		t.Fatalf("start: %d %s", res.StatusCode, out)
	}
	var st struct{ ID, State string }
	json.Unmarshal([]byte(out), &st)
	if st.State != "running" || res.Header.Get("Location") != "/api/v1/images/builds/"+st.ID {
		t.Fatalf("%s %v", out, res.Header)
	}
	// One build at a time.
	if res, out := do(t, srv, req{method: "POST", path: "/api/v1/images/builds", body: `{"recipe": "python"}`}); res.StatusCode != 409 {
		t.Errorf("second build: %d %s", res.StatusCode, out)
	}
	time.AfterFunc(100*time.Millisecond, func() { close(b.release) })
	events, data := readEvents(t, srv, "/api/v1/images/builds/"+st.ID+"/events")
	want := []string{"progress", "progress", "progress", "progress", "end"}
	if fmt.Sprint(events) != fmt.Sprint(want) || data[0] != "0 xxxxx" || data[3] != "partial line without newline" || !strings.Contains(data[4], `"state":"succeeded"`) {
		t.Errorf("events %v data %q", events, data)
	}
	for _, bad := range []string{`{}`, `{"recipe": "nope"}`, `{"recipe": "python", "name": "../x"}`, `{"environment": "../x"}`,
		`{"recipe": "python", "packages": ["a b"]}`, `{"recipe": "python", "extra": 1}`, `{"environment": "a", "agent": "b"}`} {
		if res, out := do(t, srv, req{method: "POST", path: "/api/v1/images/builds", body: bad}); res.StatusCode != 400 {
			t.Errorf("%s: %d %s", bad, res.StatusCode, out)
		}
	}
}

// TestImageBuildLogIsBounded: a build that writes far more, and far longer
// lines, than the log keeps holds at most MaxBuildLines lines of at most
// MaxBuildLineBytes; a client that reads late is told what it missed.
func TestImageBuildLogIsBounded(t *testing.T) {
	b := &fakeBuilder{lines: MaxBuildLines + 1000, width: 3 * MaxBuildLineBytes}
	srv, a := newServer(t, Options{Images: b})
	res, out := do(t, srv, req{method: "POST", path: "/api/v1/images/builds", body: `{"recipe": "minimal"}`})
	if res.StatusCode != 202 {
		t.Fatalf("%d %s", res.StatusCode, out)
	}
	bd := a.builds.lastBuild()
	<-bd.finished
	bd.mu.Lock()
	n, dropped := len(bd.lines), bd.dropped
	longest := 0
	for _, l := range bd.lines {
		longest = max(longest, len(l))
	}
	bd.mu.Unlock()
	if n != MaxBuildLines || dropped != 1001 || longest > MaxBuildLineBytes {
		t.Errorf("kept %d lines (dropped %d), longest %d bytes", n, dropped, longest)
	}
	events, data := readEvents(t, srv, "/api/v1/images/builds/"+bd.ID+"/events")
	if len(events) != MaxBuildLines+2 || events[0] != "skipped" || !strings.HasPrefix(data[0], "1001 ") || events[len(events)-1] != "end" {
		t.Errorf("%d events, first %s %q", len(events), events[0], data[0])
	}
}

func TestImageBuildCancel(t *testing.T) {
	b := &fakeBuilder{lines: 1, release: make(chan struct{})}
	srv, _ := newServer(t, Options{Images: b})
	_, out := do(t, srv, req{method: "POST", path: "/api/v1/images/builds", body: `{"recipe": "minimal"}`})
	var st struct{ ID string }
	json.Unmarshal([]byte(out), &st)
	res, out := do(t, srv, req{method: "DELETE", path: "/api/v1/images/builds/" + st.ID})
	if res.StatusCode != 200 || !strings.Contains(out, `"state": "canceled"`) {
		t.Errorf("cancel: %d %s", res.StatusCode, out)
	}
}

// TestOpenAPIDescribesEveryRoute checks the document against the routes,
// both ways.
func TestOpenAPIDescribesEveryRoute(t *testing.T) {
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(OpenAPI(), &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Errorf("openapi %q", doc.OpenAPI)
	}
	seen := map[string]bool{}
	for _, r := range Routes() {
		key := strings.ToLower(r.Method) + " " + r.Pattern
		seen[key] = true
		if _, ok := doc.Paths[r.Pattern][strings.ToLower(r.Method)]; !ok {
			t.Errorf("route %s is not in openapi.json", key)
		}
	}
	for p, ops := range doc.Paths {
		for m := range ops {
			if m == "parameters" {
				continue
			}
			if !seen[m+" "+p] {
				t.Errorf("openapi.json describes %s %s, which no route serves", m, p)
			}
		}
	}
}

func TestHostAllowedIgnoresOtherListeners(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	r.Host = "evil.example"
	if !hostAllowed(r) {
		t.Error("a request without a local address was refused")
	}
	ctx := context.WithValue(r.Context(), http.LocalAddrContextKey, &net.TCPAddr{IP: net.ParseIP("10.1.2.3"), Port: 80})
	if !hostAllowed(r.WithContext(ctx)) {
		t.Error("a non-loopback listener checked Host")
	}
}
