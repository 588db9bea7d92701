package egress

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/http/httputil"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Bounds of one sandbox's proxy. Each has a hostile test (which lowers
// it: they are variables for that reason only).
var (
	// maxConns bounds the connections a sandbox holds open to its proxy
	// (all listeners together): each costs vial goroutines, buffers and
	// an upstream socket. Past it new connections are closed at once.
	maxConns = 256
	// helloTimeout bounds the wait for a TLS ClientHello after CONNECT
	// (and on port 443), so a silent client cannot hold a slot for ever.
	helloTimeout = 10 * time.Second
	// maxHeaderBytes bounds a request's header block.
	maxHeaderBytes = 32 << 10
	// readHeaderTimeout bounds how long a request's header may take.
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 60 * time.Second
)

// proxy is one sandbox's HTTP proxy (plain HTTP and CONNECT on
// ProxyPort) plus the two listeners vial's DNS answers lead to: port 80
// (plain HTTP by Host header) and port 443 (TLS by server name), for
// programs that ignore the proxy variables. Every path asks the same
// HostPolicy about the name the client gave, and dials only through the
// dialer (no address literal unless allowed, no refused address).
type proxy struct {
	policy HostPolicy
	dial   *dialer
	rep    *reporter

	helloTimeout time.Duration
	conns        *connSet
	rp           *httputil.ReverseProxy
	transport    *http.Transport
	servers      []*http.Server
	tlsLn        net.Listener
	wg           sync.WaitGroup
}

func newProxy(policy HostPolicy, d *dialer, rep *reporter) *proxy {
	p := &proxy{policy: policy, dial: d, rep: rep, helloTimeout: helloTimeout}
	p.conns = newConnSet(maxConns, func(c net.Conn) {
		p.rep.report(Event{Time: time.Now(), Kind: KindConnect, Reason: fmt.Sprintf("too many connections (at most %d at once)", maxConns)})
	})
	p.transport = &http.Transport{
		Proxy:                 nil, // never chain to the host's own proxy settings
		DialContext:           p.dialPlanned,
		MaxIdleConns:          16,
		MaxIdleConnsPerHost:   4,
		IdleConnTimeout:       30 * time.Second,
		ResponseHeaderTimeout: 60 * time.Second,
		// Bytes pass through as the client asked for them.
		DisableCompression: true,
	}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// The outgoing request goes to the URL's host with the URL's
			// host as its Host header: the name the policy approved.
			pr.Out.Host = ""
		},
		Transport:    p.transport,
		ErrorHandler: p.forwardError,
		ErrorLog:     log.New(io.Discard, "", 0),
	}
	return p
}

// allow asks the policy (nil refuses everything).
func (p *proxy) allow(host string, port int) (bool, string) {
	if p.policy == nil {
		return false, "no host is allowed"
	}
	return p.policy.Allow(host, port)
}

// serve starts serving l's listeners; stop ends it.
func (p *proxy) serve(l *listeners) {
	httpServer := func(h http.HandlerFunc) *http.Server {
		s := &http.Server{
			Handler:           h,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    maxHeaderBytes,
			ErrorLog:          log.New(io.Discard, "", 0),
		}
		p.servers = append(p.servers, s)
		return s
	}
	for _, x := range []struct {
		s  *http.Server
		ln net.Listener
	}{
		{httpServer(p.serveProxy), l.proxy},
		{httpServer(p.serveHTTP), l.http},
	} {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			x.s.Serve(p.conns.listener(x.ln))
		}()
	}
	p.tlsLn = l.tls
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		ln := p.conns.listener(l.tls)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serveTLS(c)
		}
	}()
}

// stop closes every listener and connection and waits for the serving
// loops to end.
func (p *proxy) stop() {
	for _, s := range p.servers {
		s.Close()
	}
	if p.tlsLn != nil {
		p.tlsLn.Close()
	}
	p.conns.closeAll()
	p.wg.Wait()
	p.transport.CloseIdleConnections()
}

// serveProxy handles the proxy port: CONNECT and absolute-form HTTP.
func (p *proxy) serveProxy(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodConnect:
		p.connect(w, r)
	case r.URL.IsAbs() && r.URL.Scheme == "http":
		p.forward(w, r)
	case r.URL.IsAbs():
		http.Error(w, "vial egress proxy: only http:// URLs are forwarded; use CONNECT for https", http.StatusBadRequest)
	default:
		http.Error(w, "vial egress proxy: send CONNECT host:port or an absolute http:// URL", http.StatusBadRequest)
	}
}

// serveHTTP handles port 80, reached by a program that resolved an
// allowed name through vial's DNS and ignored the proxy variables: the
// request goes to its Host header's name, on port 80 only.
func (p *proxy) serveHTTP(w http.ResponseWriter, r *http.Request) {
	host, port, err := splitTarget(r.Host, 80)
	if err != nil || r.Method == http.MethodConnect || r.URL.IsAbs() {
		http.Error(w, "vial egress: send an ordinary request with a Host header", http.StatusBadRequest)
		return
	}
	if port != 80 {
		http.Error(w, "vial egress: this listener serves port 80 only; use the proxy", http.StatusBadRequest)
		return
	}
	u := *r.URL
	u.Scheme, u.Host = "http", host
	r.URL = &u
	p.forward(w, r)
}

// splitTarget splits "host[:port]" into a normalized host and a port
// (def when absent; 0 def means a port is required).
func splitTarget(hostport string, def int) (string, int, error) {
	host, ps, err := net.SplitHostPort(hostport)
	if err != nil {
		if def == 0 {
			return "", 0, fmt.Errorf("%q has no port", hostport)
		}
		host, ps = hostport, strconv.Itoa(def)
	}
	port, err := strconv.Atoi(ps)
	if err != nil || port < 1 || port > 65535 {
		return "", 0, fmt.Errorf("%q: bad port", hostport)
	}
	host = NormalizeHost(host)
	if _, err := netip.ParseAddr(host); err != nil && !ValidName(host) {
		return "", 0, fmt.Errorf("%q: not a host name", hostport)
	}
	return host, port, nil
}

// refuse reports a refusal and answers the client.
func (p *proxy) refuse(w http.ResponseWriter, ev Event, status int) {
	ev.Allowed = false
	ev.Duration = time.Since(ev.Time)
	p.rep.report(ev)
	msg := ev.Reason
	if ev.Err != "" {
		msg = ev.Err
	}
	http.Error(w, fmt.Sprintf("vial egress: %s refused: %s", net.JoinHostPort(ev.Host, strconv.Itoa(ev.Port)), msg), status)
}

// check asks the policy and resolves the name; on refusal it answers
// the client and returns nil.
func (p *proxy) check(ctx context.Context, w http.ResponseWriter, ev *Event) []netip.Addr {
	ok, why := p.allow(ev.Host, ev.Port)
	ev.Reason = why
	if !ok {
		p.refuse(w, *ev, http.StatusForbidden)
		return nil
	}
	addrs, err := p.dial.resolve(ctx, ev.Host, ev.Port)
	var de *DeniedError
	switch {
	case errors.As(err, &de):
		ev.Reason = de.Reason
		p.refuse(w, *ev, http.StatusForbidden)
		return nil
	case err != nil:
		ev.Err = err.Error()
		p.refuse(w, *ev, http.StatusBadGateway)
		return nil
	}
	ev.Allowed = true
	return addrs
}

// plan carries a checked destination from forward to dialPlanned.
type plan struct {
	host  string
	port  int
	addrs []netip.Addr
	addr  string // dialed (or reused) upstream address
	err   error
}

type planKey struct{}

// forward proxies one plain HTTP request to its URL's host.
func (p *proxy) forward(w http.ResponseWriter, r *http.Request) {
	ev := Event{Time: time.Now(), Kind: KindHTTP}
	host, port, err := splitTarget(r.URL.Host, 80)
	if err != nil {
		http.Error(w, "vial egress: "+err.Error(), http.StatusBadRequest)
		return
	}
	ev.Host, ev.Port = host, port
	addrs := p.check(r.Context(), w, &ev)
	if addrs == nil {
		return
	}
	pl := &plan{host: host, port: port, addrs: addrs}
	ctx := context.WithValue(r.Context(), planKey{}, pl)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		pl.addr = i.Conn.RemoteAddr().String()
	}})
	up := &countReader{r: r.Body}
	if r.Body != nil && r.Body != http.NoBody {
		r.Body = up
	}
	cw := &countWriter{ResponseWriter: w}
	p.rp.ServeHTTP(cw, r.WithContext(ctx))
	ev.Up, ev.Down, ev.Addr = up.n, cw.n, pl.addr
	if pl.err != nil {
		ev.Err = pl.err.Error()
		var de *DeniedError
		if errors.As(pl.err, &de) {
			ev.Allowed, ev.Reason, ev.Err = false, de.Reason, ""
		}
	}
	ev.Duration = time.Since(ev.Time)
	p.rep.report(ev)
}

// dialPlanned is the forwarding transport's dialer: it connects only to
// the destination forward checked, on the addresses it resolved.
func (p *proxy) dialPlanned(ctx context.Context, _, addr string) (net.Conn, error) {
	pl, _ := ctx.Value(planKey{}).(*plan)
	host, port, err := splitTarget(addr, 0)
	if err != nil || pl == nil || host != pl.host || port != pl.port {
		// Deny by default: a dial nobody checked.
		return nil, &DeniedError{Host: host, Port: port, Reason: "not checked by the proxy"}
	}
	c, _, err := p.dial.connect(ctx, host, port, pl.addrs)
	return c, err
}

func (p *proxy) forwardError(w http.ResponseWriter, r *http.Request, err error) {
	if pl, ok := r.Context().Value(planKey{}).(*plan); ok {
		pl.err = err
	}
	status := http.StatusBadGateway
	var de *DeniedError
	if errors.As(err, &de) {
		status = http.StatusForbidden
	}
	http.Error(w, "vial egress: "+err.Error(), status)
}

// connect serves CONNECT host:port: the tunnel opens only when the
// client's TLS ClientHello names the same host. Without that check a
// client could CONNECT to an allowed name and speak to any other site
// served from the same address (a CDN), or tunnel anything that is not
// TLS at all. The hello is read, never answered: vial does not intercept
// TLS.
func (p *proxy) connect(w http.ResponseWriter, r *http.Request) {
	ev := Event{Time: time.Now(), Kind: KindConnect}
	host, port, err := splitTarget(r.Host, 0)
	if err != nil {
		http.Error(w, "vial egress: CONNECT needs host:port: "+err.Error(), http.StatusBadRequest)
		return
	}
	ev.Host, ev.Port = host, port
	addrs := p.check(r.Context(), w, &ev)
	if addrs == nil {
		return
	}
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		ev.Err = "hijacking the connection: " + err.Error()
		p.refuse(w, ev, http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Time{})
	if _, err := io.WriteString(conn, "HTTP/1.1 200 Connection Established\r\n\r\n"); err != nil {
		return
	}
	p.tunnel(conn, brw.Reader, ev, addrs)
}

// serveTLS serves port 443, reached by a program that resolved an
// allowed name through vial's DNS and ignored the proxy variables: the
// destination is the ClientHello's server name.
func (p *proxy) serveTLS(c net.Conn) {
	defer c.Close()
	ev := Event{Time: time.Now(), Kind: KindTLS, Port: 443}
	c.SetReadDeadline(time.Now().Add(p.helloTimeout))
	name, raw, err := readClientHello(c)
	c.SetReadDeadline(time.Time{})
	ev.Host = NormalizeHost(name)
	switch {
	case err != nil:
		ev.Reason = "not a TLS connection: " + err.Error()
	case name == "":
		ev.Reason = "the TLS ClientHello names no server: reach hosts by name"
	}
	if ev.Reason != "" {
		p.rep.report(ev)
		return
	}
	ok, why := p.allow(ev.Host, ev.Port)
	ev.Reason = why
	if !ok {
		p.rep.report(ev)
		return
	}
	addrs, err := p.dial.resolve(context.Background(), ev.Host, ev.Port)
	if err != nil {
		p.reportDialError(ev, err)
		return
	}
	ev.Allowed = true
	p.splice(c, c, raw, ev, addrs)
}

// tunnel reads the ClientHello from a CONNECT tunnel, checks its server
// name against the CONNECT host and, if it matches, splices the tunnel
// to the upstream.
func (p *proxy) tunnel(conn net.Conn, br *bufio.Reader, ev Event, addrs []netip.Addr) {
	conn.SetReadDeadline(time.Now().Add(p.helloTimeout))
	name, raw, err := readClientHello(br)
	conn.SetReadDeadline(time.Time{})
	_, notLiteral := netip.ParseAddr(ev.Host)
	switch {
	case err != nil:
		ev.Allowed, ev.Reason = false, "not TLS inside CONNECT (the proxy tunnels TLS only): "+err.Error()
	case name == "" && notLiteral != nil:
		ev.Allowed, ev.Reason = false, "the TLS ClientHello names no server"
	case name != "" && NormalizeHost(name) != ev.Host:
		ev.Allowed, ev.Reason = false, fmt.Sprintf("TLS server name %q does not match CONNECT host %q", name, ev.Host)
	}
	if !ev.Allowed {
		ev.Duration = time.Since(ev.Time)
		p.rep.report(ev)
		return
	}
	p.splice(conn, br, raw, ev, addrs)
}

// splice connects to the upstream, replays what was read from the client
// and copies both ways until both sides are done, then reports ev.
func (p *proxy) splice(client net.Conn, fromClient io.Reader, raw []byte, ev Event, addrs []netip.Addr) {
	up, addr, err := p.dial.connect(context.Background(), ev.Host, ev.Port, addrs)
	ev.Addr = addr
	if err != nil {
		p.reportDialError(ev, err)
		return
	}
	defer up.Close()
	if _, err := up.Write(raw); err != nil {
		ev.Err = "writing to upstream: " + err.Error()
		ev.Duration = time.Since(ev.Time)
		p.rep.report(ev)
		return
	}
	ev.Up = int64(len(raw))
	var wg sync.WaitGroup
	var upN, downN int64
	var upErr, downErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		upN, upErr = io.Copy(up, fromClient)
		if upErr != nil {
			up.Close()
			client.Close()
			return
		}
		closeWrite(up)
	}()
	downN, downErr = io.Copy(client, up)
	if downErr != nil {
		up.Close()
		client.Close()
	} else {
		closeWrite(client)
	}
	wg.Wait()
	ev.Up += upN
	ev.Down = downN
	if err := errors.Join(upErr, downErr); err != nil && !errors.Is(err, net.ErrClosed) {
		ev.Err = err.Error()
	}
	ev.Duration = time.Since(ev.Time)
	p.rep.report(ev)
}

func (p *proxy) reportDialError(ev Event, err error) {
	var de *DeniedError
	if errors.As(err, &de) {
		ev.Allowed, ev.Reason = false, de.Reason
	} else {
		ev.Err = err.Error()
	}
	ev.Duration = time.Since(ev.Time)
	p.rep.report(ev)
}

// closeWrite half-closes c's sending side, so the peer sees EOF while
// the other direction goes on.
func closeWrite(c net.Conn) {
	for {
		switch v := c.(type) {
		case interface{ CloseWrite() error }:
			v.CloseWrite()
			return
		case interface{ NetConn() net.Conn }:
			c = v.NetConn()
		default:
			return
		}
	}
}

type countReader struct {
	r io.ReadCloser
	n int64
}

func (c *countReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func (c *countReader) Close() error { return c.r.Close() }

type countWriter struct {
	http.ResponseWriter
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.ResponseWriter.Write(p)
	c.n += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the real writer (flushes,
// hijacking for protocol upgrades).
func (c *countWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// connSet tracks a sandbox's open connections to its listeners, refuses
// those past max, and closes them all when the network closes.
type connSet struct {
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	max      int
	closed   bool
	onReject func(net.Conn)
}

func newConnSet(max int, onReject func(net.Conn)) *connSet {
	return &connSet{conns: map[net.Conn]struct{}{}, max: max, onReject: onReject}
}

func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || len(s.conns) >= s.max {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

func (s *connSet) closeAll() {
	s.mu.Lock()
	s.closed = true
	conns := s.conns
	s.conns = map[net.Conn]struct{}{}
	s.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

func (s *connSet) listener(ln net.Listener) net.Listener {
	return &trackingListener{Listener: ln, set: s}
}

type trackingListener struct {
	net.Listener
	set *connSet
}

func (l *trackingListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		tc := &trackedConn{Conn: c, set: l.set}
		if l.set.add(tc) {
			return tc, nil
		}
		c.Close()
		if l.set.onReject != nil {
			l.set.onReject(c)
		}
	}
}

type trackedConn struct {
	net.Conn
	set  *connSet
	once sync.Once
}

func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.set.remove(c) })
	return err
}

// NetConn returns the underlying connection (for half-closing).
func (c *trackedConn) NetConn() net.Conn { return c.Conn }
