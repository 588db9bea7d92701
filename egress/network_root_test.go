package egress

// Root tests of a network on its own (no sandbox): clients run inside the
// sandbox's namespace S from a thread moved there, and talk to the test
// upstream through vial's proxy and DNS.

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/miekg/dns"
	"github.com/vial-run/vial/internal/testupstream"
	"golang.org/x/sys/unix"
)

// dialFrom returns a dial function whose sockets are created inside the
// network namespace at nsPath: the calling goroutine's thread enters it
// for the socket call only and goes back before it is unlocked.
func dialFrom(nsPath string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			goruntime.LockOSThread()
			home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				ch <- res{nil, err}
				return // thread ends locked
			}
			defer unix.Close(home)
			fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				ch <- res{nil, err}
				return
			}
			defer unix.Close(fd)
			if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
				ch <- res{nil, err}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			if unix.Setns(home, unix.CLONE_NEWNET) == nil {
				goruntime.UnlockOSThread()
			}
			ch <- res{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
}

// sandboxClient is an HTTP client inside S that uses vial's proxy, as a
// program honouring HTTP_PROXY does; direct skips the proxy (a program
// ignoring it). Every request gets a fresh connection.
func sandboxClient(n *Network, u *testupstream.Upstream, direct bool) *http.Client {
	tr := &http.Transport{
		DialContext:       dialFrom(n.NetnsPath),
		TLSClientConfig:   &tls.Config{RootCAs: u.CA},
		DisableKeepAlives: true,
	}
	if !direct {
		pu, _ := url.Parse(fmt.Sprintf("http://%s:%d", ProxyIP, ProxyPort))
		tr.Proxy = http.ProxyURL(pu)
	}
	return &http.Client{Transport: tr, Timeout: 20 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

// events collects a network's events.
type events struct {
	mu sync.Mutex
	ev []Event
}

func (e *events) add(ev Event) { e.mu.Lock(); e.ev = append(e.ev, ev); e.mu.Unlock() }

func (e *events) find(kind, host string, allowed bool) (Event, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.ev {
		if ev.Kind == kind && ev.Host == host && ev.Allowed == allowed {
			return ev, true
		}
	}
	return Event{}, false
}

func openTestNetwork(t testing.TB, u *testupstream.Upstream, state string, ev *events) *Network {
	t.Helper()
	o := testOptions(u, t, state)
	if ev != nil {
		o.Events = ev.add
	}
	n, err := Open(context.Background(), "t-"+randHex(4), o)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := n.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return n
}

func TestNetworkProxyAndDNS(t *testing.T) {
	u := testupstream.New(t)
	state := t.TempDir()
	t.Cleanup(func() { Collect(state) })
	var ev events
	n := openTestNetwork(t, u, state, &ev)
	c := sandboxClient(n, u, false)

	get := func(rawURL string) (int, string, error) {
		resp, err := c.Get(rawURL)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}
	t.Run("allowed", func(t *testing.T) {
		for _, tc := range []struct{ url, want string }{
			{"http://allowed.test/", "hello from allowed.test over http"},
			{"https://allowed.test/", "hello from allowed.test over https"},
			{"https://dns-allowed.test/", "hello from dns-allowed.test over https"},
			{"http://allowed.test:8080/", "hello from allowed.test:8080 over http"},
		} {
			code, body, err := get(tc.url)
			if err != nil || code != 200 || !strings.Contains(body, tc.want) {
				t.Errorf("GET %s through the proxy: %d %q %v; want 200 %q", tc.url, code, body, err, tc.want)
			}
		}
		if e, ok := ev.find(KindConnect, "allowed.test", true); !ok || e.Down == 0 || e.Addr == "" {
			t.Errorf("no allowed CONNECT event with bytes for allowed.test: %+v", e)
		}
		if !slices.Contains(u.DNSLog(), "dns-allowed.test") {
			t.Errorf("dns-allowed.test was not resolved through the upstream's DNS: %q", u.DNSLog())
		}
	})
	t.Run("refused", func(t *testing.T) {
		for _, tc := range []struct{ url, why string }{
			{"http://denied.test/", "not in allowed_hosts"},
			{"https://denied.test/", "not in allowed_hosts"},
			{"http://" + u.IP.String() + "/", "address literal"},
			{"https://" + u.IP.String() + "/", "address literal"},
			{"http://169.254.169.254/latest/meta-data/", "address literal"},
			{"http://meta.test/", "link-local"},
			{"http://hostself.test/", "address of this host"},
			{"http://hostip.test/", "address of this host"},
			{"http://loop.test/", "loopback"},
			{"http://127.0.0.1/", "blocked"},
			{"http://localhost/", "blocked"},
			{"http://allowed.test:22/", "port 22 not allowed"},
			{"https://allowed.test:8080/", "port 8080"}, // 8080 is allowed, but not TLS there: see below
		} {
			code, body, err := get(tc.url)
			if tc.url == "https://allowed.test:8080/" {
				// CONNECT is allowed, the upstream's 8080 speaks plain
				// HTTP: the tunnel carries TLS to a non-TLS server and
				// fails there, not in vial.
				if err == nil {
					t.Errorf("GET %s: unexpectedly succeeded", tc.url)
				}
				continue
			}
			if err == nil && code == 200 {
				t.Errorf("GET %s through the proxy succeeded: %q", tc.url, body)
				continue
			}
			if err == nil && !strings.Contains(body, tc.why) {
				t.Errorf("GET %s: %d %q; want a refusal saying %q", tc.url, code, body, tc.why)
			}
		}
		if hostip := testupstream.PrimaryHostAddr(); !hostip.IsValid() {
			t.Log("no primary host address to test")
		}
	})
	t.Run("sni", func(t *testing.T) {
		// CONNECT allowed.test, then a ClientHello naming another host.
		conn, err := dialFrom(n.NetnsPath)(context.Background(), "tcp", fmt.Sprintf("%s:%d", ProxyIP, ProxyPort))
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
		br := bufio.NewReader(conn)
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("CONNECT allowed.test: %v %v", resp, err)
		}
		tc := tls.Client(&bufConn{Conn: conn, r: br}, &tls.Config{ServerName: "other.test", RootCAs: u.CA})
		tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err == nil {
			t.Fatal("a TLS handshake naming other.test went through a CONNECT to allowed.test")
		}
		waitFor(t, func() bool { _, ok := ev.find(KindConnect, "allowed.test", false); return ok })
		e, _ := ev.find(KindConnect, "allowed.test", false)
		if !strings.Contains(e.Reason, `"other.test"`) {
			t.Errorf("refusal reason %q does not name the server name", e.Reason)
		}
	})
	t.Run("dns", func(t *testing.T) {
		before := len(u.DNSLog())
		for _, tc := range []struct {
			name  string
			qtype uint16
			net   string
			rcode int
			a     string
		}{
			{"allowed.test.", dns.TypeA, "udp", dns.RcodeSuccess, ProxyIP.String()},
			{"ALLOWED.test.", dns.TypeA, "tcp", dns.RcodeSuccess, ProxyIP.String()},
			{"allowed.test.", dns.TypeAAAA, "udp", dns.RcodeSuccess, ""},
			{"allowed.test.", dns.TypeTXT, "udp", dns.RcodeRefused, ""},
			{"allowed.test.", dns.TypeANY, "udp", dns.RcodeRefused, ""},
			{"denied.test.", dns.TypeA, "udp", dns.RcodeNameError, ""},
			{"denied.test.", dns.TypeA, "tcp", dns.RcodeNameError, ""},
			{"exfiltrate-secret-data.denied.test.", dns.TypeA, "udp", dns.RcodeNameError, ""},
			{"2.0.87.10.in-addr.arpa.", dns.TypePTR, "udp", dns.RcodeNameError, ""},
		} {
			m := new(dns.Msg)
			m.SetQuestion(tc.name, tc.qtype)
			r, err := exchangeFrom(n.NetnsPath, tc.net, m)
			if err != nil {
				t.Errorf("%s %s over %s: %v", dns.TypeToString[tc.qtype], tc.name, tc.net, err)
				continue
			}
			var got string
			if len(r.Answer) > 0 {
				got = r.Answer[0].(*dns.A).A.String()
			}
			if r.Rcode != tc.rcode || got != tc.a || len(r.Answer) > 1 {
				t.Errorf("%s %s over %s: rcode %s answer %v; want %s %q",
					dns.TypeToString[tc.qtype], tc.name, tc.net, dns.RcodeToString[r.Rcode], r.Answer, dns.RcodeToString[tc.rcode], tc.a)
			}
		}
		if log := u.DNSLog()[before:]; len(log) > 0 {
			t.Errorf("vial's DNS forwarded queries to the upstream resolver: %q", log)
		}
		for _, name := range u.DNSLog() {
			if strings.Contains(name, "denied") {
				t.Errorf("the upstream resolver saw a query for %q", name)
			}
		}
		if _, ok := ev.find(KindDNS, "denied.test", false); !ok {
			t.Error("no DNS refusal event for denied.test")
		}
	})
	t.Run("without-proxy", func(t *testing.T) {
		// A program that ignores the proxy variables: vial's DNS sends it
		// to vial's own ports 80 and 443, which check the Host header and
		// the TLS server name.
		d := sandboxClient(n, u, true)
		d.Transport.(*http.Transport).DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			return dialFrom(n.NetnsPath)(ctx, network, net.JoinHostPort(ProxyIP.String(), port))
		}
		for _, tc := range []struct {
			url  string
			want int
		}{
			{"http://allowed.test/", 200}, {"https://allowed.test/", 200},
			{"http://denied.test/", 403}, {"https://denied.test/", 0},
		} {
			resp, err := d.Get(tc.url)
			code := 0
			if err == nil {
				code = resp.StatusCode
				resp.Body.Close()
			}
			if code != tc.want {
				t.Errorf("GET %s without the proxy: status %d (%v); want %d", tc.url, code, err, tc.want)
			}
		}
		if _, ok := ev.find(KindTLS, "denied.test", false); !ok {
			t.Error("no refusal event for TLS to denied.test on port 443")
		}
		// Nothing but P is routed: the upstream itself is unreachable.
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		for _, addr := range []string{u.IP.String() + ":80", "169.254.169.254:80", u.HostIP.String() + ":80"} {
			if c, err := dialFrom(n.NetnsPath)(ctx, "tcp", addr); err == nil {
				c.Close()
				t.Errorf("the sandbox reached %s directly", addr)
			} else if !errors.Is(err, unix.ENETUNREACH) {
				t.Logf("direct %s: %v", addr, err)
			}
		}
	})
}

// bufConn reads through a bufio.Reader that may hold bytes already read.
type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// exchangeFrom sends m to vial's DNS from inside the namespace at nsPath.
func exchangeFrom(nsPath, network string, m *dns.Msg) (*dns.Msg, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dialFrom(nsPath)(ctx, network, ProxyIP.String()+":53")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	co := &dns.Conn{Conn: c}
	if err := co.WriteMsg(m); err != nil {
		return nil, err
	}
	return co.ReadMsg()
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out waiting")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func randHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return fmt.Sprintf("%x", b)
}

// TestProxyBounds: each bound of the proxy holds against a client that
// tries to exceed it, and the proxy keeps serving afterwards.
func TestProxyBounds(t *testing.T) {
	defer func(c int, h, r time.Duration) { maxConns, helloTimeout, readHeaderTimeout = c, h, r }(maxConns, helloTimeout, readHeaderTimeout)
	maxConns, helloTimeout, readHeaderTimeout = 8, 300*time.Millisecond, 300*time.Millisecond
	u := testupstream.New(t)
	state := t.TempDir()
	t.Cleanup(func() { Collect(state) })
	var ev events
	n := openTestNetwork(t, u, state, &ev)
	dial := func() net.Conn {
		t.Helper()
		c, err := dialFrom(n.NetnsPath)(context.Background(), "tcp", fmt.Sprintf("%s:%d", ProxyIP, ProxyPort))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	// closedSoon reports whether the proxy closes c within a few seconds.
	closedSoon := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := io.Copy(io.Discard, c)
		var ne net.Error
		return err == nil || !(errors.As(err, &ne) && ne.Timeout())
	}
	get := func(c net.Conn, br *bufio.Reader) int {
		t.Helper()
		fmt.Fprintf(c, "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("request through the proxy: %v", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}

	t.Run("connections", func(t *testing.T) {
		var held []net.Conn
		for range maxConns {
			c := dial()
			defer c.Close()
			if code := get(c, bufio.NewReader(c)); code != 200 {
				t.Fatalf("status %d", code)
			}
			held = append(held, c)
		}
		extra := dial()
		defer extra.Close()
		if !closedSoon(extra) {
			t.Fatalf("connection %d past the limit of %d was held open", maxConns+1, maxConns)
		}
		waitFor(t, func() bool {
			e, ok := ev.find(KindConnect, "", false)
			return ok && strings.Contains(e.Reason, "too many")
		})
		held[0].Close()
		var code int
		waitFor(t, func() bool {
			c := dial()
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			fmt.Fprintf(c, "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err == nil {
				code = resp.StatusCode
			}
			return err == nil
		})
		if code != 200 {
			t.Errorf("after a slot freed: status %d", code)
		}
	})
	t.Run("silent-tunnel", func(t *testing.T) {
		// The previous subtest's connections close asynchronously: until
		// the proxy has seen them go, a new one may still be over the limit.
		var c net.Conn
		var br *bufio.Reader
		waitFor(t, func() bool {
			if c != nil {
				c.Close()
			}
			c = dial()
			br = bufio.NewReader(c)
			fmt.Fprintf(c, "CONNECT allowed.test:443 HTTP/1.1\r\nHost: allowed.test:443\r\n\r\n")
			resp, err := http.ReadResponse(br, nil)
			return err == nil && resp.StatusCode == 200
		})
		defer c.Close()
		start := time.Now()
		if !closedSoon(&bufConn{Conn: c, r: br}) {
			t.Fatal("a tunnel that never sent a ClientHello was held open")
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("closed after %v; the hello timeout is %v", d, helloTimeout)
		}
	})
	t.Run("slow-header", func(t *testing.T) {
		c := dial()
		defer c.Close()
		fmt.Fprintf(c, "GET http://allowed.test/ HTTP/1.1\r\nX-Slow: ")
		if !closedSoon(c) {
			t.Fatal("a request whose header never ends was held open")
		}
	})
	t.Run("huge-header", func(t *testing.T) {
		c := dial()
		defer c.Close()
		fmt.Fprintf(c, "GET http://allowed.test/ HTTP/1.1\r\nHost: allowed.test\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", 2*maxHeaderBytes))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Fatalf("a %d-byte header: %v %v; want 431", 2*maxHeaderBytes, resp, err)
		}
	})
}

// TestClient: vial's own requests (http_request, fetch_url) follow the
// same rules as a sandbox's, hop by hop, within their bounds.
func TestClient(t *testing.T) {
	u := testupstream.New(t)
	o := testOptions(u, t, "")
	var ev events
	newClient := func(mod func(*ClientOptions)) *Client {
		co := ClientOptions{Policy: o.Policy, Hosts: o.Hosts, AllowPrivateCIDRs: o.AllowPrivateCIDRs, Resolver: o.Resolver, RootCAs: u.CA, Events: ev.add}
		if mod != nil {
			mod(&co)
		}
		c, err := NewClient(co)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := newClient(nil)
	ctx := t.Context()

	resp, err := c.Do(ctx, Request{URL: "https://allowed.test/"})
	if err != nil || resp.Status != 200 || string(resp.Body) != "hello from allowed.test over https\n" {
		t.Fatalf("GET https://allowed.test/: %+v %v", resp, err)
	}
	resp, err = c.Do(ctx, Request{Method: "post", URL: "http://allowed.test/echo", Headers: map[string]string{"x-test": "v"}, Body: []byte("body")})
	if err != nil || string(resp.Body) != "POST v body" {
		t.Fatalf("POST: %+v %v", resp, err)
	}
	resp, err = c.Do(ctx, Request{URL: "https://allowed.test/to?u=https://dns-allowed.test/"})
	if err != nil || resp.URL != "https://dns-allowed.test/" || !strings.Contains(string(resp.Body), "dns-allowed.test") {
		t.Fatalf("an allowed redirect: %+v %v", resp, err)
	}
	if e, ok := ev.find(KindFetch, "allowed.test", true); !ok || e.Down == 0 || e.Addr == "" {
		t.Errorf("no fetch event with bytes and address: %+v", e)
	}

	for _, tc := range []struct{ url, why string }{
		{"http://localhost/", "blocked"},
		{"http://127.0.0.1:8080/", "blocked"},
		{"http://denied.test/", "not in allowed_hosts"},
		{"http://169.254.169.254/", "address literal"},
		{"http://" + u.IP.String() + "/", "address literal"},
		{"http://meta.test/", "link-local"},
		{"http://hostself.test/", "address of this host"},
		{"http://loop.test/", "loopback"},
		{"http://allowed.test:22/", "port 22"},
		// Redirects are checked hop by hop.
		{"https://allowed.test/to?u=http://denied.test/", "not in allowed_hosts"},
		{"https://allowed.test/to?u=http://127.0.0.1/", "blocked"},
		{"https://allowed.test/to?u=http://meta.test/", "link-local"},
	} {
		_, err := c.Do(ctx, Request{URL: tc.url})
		if !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("GET %s: %v; want a refusal saying %q", tc.url, err, tc.why)
		}
	}

	t.Run("bounds", func(t *testing.T) {
		if _, err := c.Do(ctx, Request{URL: "https://allowed.test/loop"}); !errdefs.IsResourceExhausted(err) {
			t.Errorf("a redirect loop: %v; want resource exhausted", err)
		}
		small := newClient(func(o *ClientOptions) { o.MaxBodyBytes, o.Timeout, o.MaxTextBytes = 1000, 500*time.Millisecond, 8 })
		resp, err := small.Do(ctx, Request{URL: "http://allowed.test/big?n=1000000"})
		if err != nil || !resp.Truncated || len(resp.Body) != 1000 {
			t.Errorf("a 1 MB body with a 1000-byte cap: %d bytes, truncated %v, %v", len(resp.Body), resp != nil && resp.Truncated, err)
		}
		start := time.Now()
		if _, err := small.Do(ctx, Request{URL: "http://allowed.test/slow"}); !errdefs.IsUnavailable(err) || time.Since(start) > 5*time.Second {
			t.Errorf("a stalled upstream: %v after %v; want unavailable after the 500ms timeout", err, time.Since(start))
		}
		p, err := small.Fetch(ctx, "https://allowed.test/page")
		if err != nil || !p.Truncated || len(p.Text) > 8 {
			t.Errorf("Fetch with an 8-byte text cap: %+v %v", p, err)
		}
	})
	t.Run("fetch", func(t *testing.T) {
		p, err := c.Fetch(ctx, "https://allowed.test/page")
		if err != nil || p.Title != "Test page" || p.Text != "Hello\n\nfrom the upstream" {
			t.Errorf("Fetch(page) = %+v, %v", p, err)
		}
		p, err = c.Fetch(ctx, "http://allowed.test/big?n=100")
		if err != nil || !strings.Contains(p.Text, "not text") {
			t.Errorf("Fetch(binary) = %+v, %v", p, err)
		}
		if _, err := c.Fetch(ctx, "http://denied.test/"); !errdefs.IsPermissionDenied(err) {
			t.Errorf("Fetch(denied) = %v", err)
		}
	})
}
