package service

import (
	"context"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/egress"
	"github.com/vial-run/vial/internal/human"
	"github.com/vial-run/vial/observe"
	"github.com/vial-run/vial/policy"
	"github.com/vial-run/vial/runtime"
)

// NetworkPolicy opens the network for an environment's sandboxes: egress
// only to Allowed, through a proxy and a DNS responder vial runs in a
// private namespace beside each sandbox (package egress). Blocked always
// wins. The host's network namespace is never touched.
type NetworkPolicy struct {
	Allowed []string // allowed_hosts: names, *.suffix, name:port
	Blocked []string // blocked_hosts: refused whatever Allowed says
	// Hosts is the operator's static name → address table, used before
	// DNS; AllowPrivateCIDRs are private ranges vial may dial for an
	// allowed name (an internal mirror).
	Hosts             map[string]string
	AllowPrivateCIDRs []string
	// Within, if set, must allow a host too: a named environment's
	// network is bounded by the agent's (a model's choice of environment
	// may tighten, never loosen).
	Within *NetworkPolicy

	once  sync.Once
	rules egress.HostPolicy
	err   error
}

// hostRules compiles the policy once.
func (n *NetworkPolicy) hostRules() (egress.HostPolicy, error) {
	n.once.Do(func() {
		var own *egress.HostRules
		if own, n.err = egress.NewHostRules(n.Allowed, n.Blocked); n.err != nil {
			return
		}
		n.rules = own
		if n.Within != nil {
			outer, err := n.Within.hostRules()
			if err != nil {
				n.err = err
				return
			}
			n.rules = bothPolicies{own, outer}
		}
	})
	return n.rules, n.err
}

// bothPolicies allows what both allow.
type bothPolicies struct{ a, b egress.HostPolicy }

func (p bothPolicies) Allow(host string, port int) (bool, string) {
	if ok, why := p.a.Allow(host, port); !ok {
		return false, why
	}
	return p.b.Allow(host, port)
}

// Validate reports whether the policy's entries make sense.
func (n *NetworkPolicy) Validate() error {
	_, err := n.hostRules()
	return err
}

// egressEvent maps an egress decision onto an observe event.
// sandbox names the sandbox whose network it is ("" for vial's own
// requests, or before the sandbox has started).
func egressEvent(bus *observe.Bus, sandbox func() string) func(egress.Event) {
	return func(e egress.Event) {
		d := "denied"
		if e.Allowed {
			d = "allowed"
		}
		var id string
		if sandbox != nil {
			id = sandbox()
		}
		bus.Publish(observe.Event{Time: e.Time, Kind: observe.KindEgress, Sandbox: id, Host: e.Host, Port: e.Port, Decision: d,
			Reason: e.Reason, Error: e.Err, BytesUp: e.Up, BytesDown: e.Down, Duration: e.Duration, Action: string(e.Kind)})
	}
}

// openNetwork opens a sandbox's network namespace and its proxy and DNS.
func (p *EngineProvider) openNetwork(ctx context.Context, n *NetworkPolicy, sandbox func() string) (*egress.Network, *runtime.Network, error) {
	rules, err := n.hostRules()
	if err != nil {
		return nil, nil, fmt.Errorf("the network policy: %w", err)
	}
	net, err := egress.Open(ctx, "n"+runtime.NewContextID()[4:], egress.Options{
		StateDir: p.eng.StateDir(), Policy: rules, Hosts: n.Hosts, AllowPrivateCIDRs: n.AllowPrivateCIDRs,
		Events: egressEvent(p.Events, sandbox), Log: p.Log,
	})
	if err != nil {
		return nil, nil, err
	}
	return net, &runtime.Network{NetnsPath: net.NetnsPath, ResolvConf: net.ResolvConf, Env: net.Env}, nil
}

// networked closes a sandbox's network after the sandbox.
type networked struct {
	Sandbox
	net *egress.Network
}

func (s networked) Close() error {
	err := s.Sandbox.Close()
	if nerr := s.net.Close(); err == nil {
		err = nerr
	}
	return err
}

// PeakMemory passes the sandbox's cheap read on.
func (s networked) PeakMemory() (uint64, error) {
	if pr, ok := s.Sandbox.(interface{ PeakMemory() (uint64, error) }); ok {
		return pr.PeakMemory()
	}
	u, err := s.Usage()
	return u.PeakMemory, err
}

// HTTPRequest is a request vial makes itself (http_request).
type HTTPRequest struct {
	Method  string
	URL     string
	Headers map[string]string
	Body    []byte
}

// httpClient is the client of http_request and fetch_url: the agent's
// network policy and http_request's blocked hosts, from vial's own
// network namespace, by name only, every redirect checked again.
func (s *Service) httpClient() (*egress.Client, error) {
	s.clientOnce.Do(func() {
		n := s.opts.HTTP
		if n == nil {
			s.clientErr = errorf(errdefs.ErrFailedPrecondition, "the network is closed for this agent: no host may be reached (the operator opens it with [sandbox.network] enabled = true and allowed_hosts)")
			return
		}
		rules, err := n.hostRules()
		if err != nil {
			s.clientErr = err
			return
		}
		s.client, s.clientErr = egress.NewClient(egress.ClientOptions{Policy: rules, Hosts: n.Hosts, AllowPrivateCIDRs: n.AllowPrivateCIDRs,
			RootCAs: s.opts.HTTPRootCAs, Events: egressEvent(s.events, nil), Log: s.log})
	})
	return s.client, s.clientErr
}

// HTTPRequest makes a request from vial itself (http_request), decided by
// the policy first: GET and HEAD are approved without asking when the
// operator says so (auto_approve_methods), other methods ask a person.
func (s *Session) HTTPRequest(ctx context.Context, r HTTPRequest) (resp *egress.Response, err error) {
	o := s.begin("http_request", map[string]any{"method": r.Method, "url": r.URL, "headers": r.Headers, "body_sha256": digest("", map[string]any{"b": string(r.Body)})})
	defer func() { o.end("", err) }()
	if r.Method == "" {
		r.Method = "GET"
	}
	r.Method = strings.ToUpper(r.Method)
	host, port, err := urlHostPort(r.URL)
	if err != nil {
		return nil, err
	}
	sum := Summary{Tool: "http_request", Action: fmt.Sprintf("send %s %s", r.Method, human.Trunc(r.URL, 500))}
	if len(r.Body) > 0 {
		sum.Detail = detail(string(r.Body))
	}
	if _, err := s.authorize(ctx, policy.Call{Tool: "http_request", Args: map[string]any{"method": r.Method, "url": r.URL, "headers": r.Headers, "body": string(r.Body)},
		Method: r.Method, Host: host, Port: port}, sum); err != nil {
		return nil, err
	}
	c, err := s.svc.httpClient()
	if err != nil {
		return nil, err
	}
	return c.Do(ctx, egress.Request{Method: r.Method, URL: r.URL, Headers: r.Headers, Body: r.Body})
}

// FetchURL fetches a page as text (fetch_url), size-capped.
func (s *Session) FetchURL(ctx context.Context, rawURL string) (page *egress.Page, err error) {
	o := s.begin("fetch_url", map[string]any{"url": rawURL})
	defer func() { o.end("", err) }()
	host, port, err := urlHostPort(rawURL)
	if err != nil {
		return nil, err
	}
	if _, err := s.authorize(ctx, policy.Call{Tool: "fetch_url", Args: map[string]any{"url": rawURL}, Method: "GET", Host: host, Port: port},
		Summary{Tool: "fetch_url", Action: "fetch " + human.Trunc(rawURL, 500)}); err != nil {
		return nil, err
	}
	c, err := s.svc.httpClient()
	if err != nil {
		return nil, err
	}
	return c.Fetch(ctx, rawURL)
}

func urlHostPort(raw string) (string, int, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Hostname() == "" {
		return "", 0, errorf(errdefs.ErrInvalidArgument, "%q is not an http:// or https:// URL", human.Trunc(raw, 200))
	}
	port := 80
	if u.Scheme == "https" {
		port = 443
	}
	if p := u.Port(); p != "" {
		if port, err = strconv.Atoi(p); err != nil {
			return "", 0, errorf(errdefs.ErrInvalidArgument, "bad port in %q", human.Trunc(raw, 200))
		}
	}
	return strings.ToLower(u.Hostname()), port, nil
}
