package egress

// Benchmarks (root): what a sandbox's network costs to set up and tear
// down, and what vial's proxy adds to a fresh connection beside a direct
// one to the same upstream. Run with
//
//	go test -run '^$' -bench . -benchtime 200x ./egress/

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	goruntime "runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vial-run/vial/internal/testupstream"
	"github.com/vial-run/vial/internal/testutil"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime"
)

// BenchmarkNetworkOpenClose: one sandbox network's set-up (Open: two
// namespaces, the veth, five listeners) and teardown (Close), reported
// apart as open-ms and close-ms.
func BenchmarkNetworkOpenClose(b *testing.B) {
	testutil.RequireRoot(b)
	state := b.TempDir()
	b.Cleanup(func() { Collect(state) })
	rules := testRules(b)
	var open, close time.Duration
	for i := 0; b.Loop(); i++ {
		t0 := time.Now()
		n, err := Open(context.Background(), fmt.Sprintf("b-%d", i), Options{StateDir: state, Policy: rules})
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := n.Close(); err != nil {
			b.Fatal(err)
		}
		open, close = open+t1.Sub(t0), close+time.Since(t1)
	}
	b.ReportMetric(float64(open.Microseconds())/1000/float64(b.N), "open-ms")
	b.ReportMetric(float64(close.Microseconds())/1000/float64(b.N), "close-ms")
}

// BenchmarkConnection: one fresh connection and one GET per operation,
// directly from the host to the upstream, and from the sandbox's
// namespace through vial's proxy (HTTP forwarded, HTTPS through CONNECT).
func BenchmarkConnection(b *testing.B) {
	u := testupstream.New(b)
	state := b.TempDir()
	b.Cleanup(func() { Collect(state) })
	n := openTestNetwork(b, u, state, nil)
	sdial := nsDialer(b, n.NetnsPath)
	pu, _ := url.Parse(fmt.Sprintf("http://%s:%d", ProxyIP, ProxyPort))
	direct := &http.Transport{
		// The direct client knows where allowed.test is, as the proxy does.
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			_, port, _ := net.SplitHostPort(addr)
			var d net.Dialer
			return d.DialContext(ctx, network, net.JoinHostPort(u.IP.String(), port))
		},
		TLSClientConfig: &tls.Config{RootCAs: u.CA}, DisableKeepAlives: true,
	}
	proxied := &http.Transport{DialContext: sdial, Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: u.CA}, DisableKeepAlives: true}
	for _, tc := range []struct {
		name string
		tr   *http.Transport
		url  string
	}{
		{"direct/http", direct, "http://allowed.test/"},
		{"proxy/http", proxied, "http://allowed.test/"},
		{"direct/https", direct, "https://allowed.test/"},
		{"proxy/https", proxied, "https://allowed.test/"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			c := &http.Client{Transport: tc.tr}
			for b.Loop() {
				resp, err := c.Get(tc.url)
				if err != nil {
					b.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
			}
		})
	}
}

// BenchmarkSandboxRun: a sandbox running /bin/true without a network and
// with one (the network's own Open and Close included), on runc and runsc.
func BenchmarkSandboxRun(b *testing.B) {
	for _, rt := range []string{"runc", "runsc"} {
		e, state := testEngine(b, rt)
		img, err := rootfs.Host(state)
		if err != nil {
			b.Fatal(err)
		}
		rules := testRules(b)
		for _, on := range []bool{false, true} {
			name := rt + "/off"
			if on {
				name = rt + "/on"
			}
			b.Run(name, func(b *testing.B) {
				for i := 0; b.Loop(); i++ {
					req := runtime.Request{Image: img, Args: []string{"/bin/true"}}
					var n *Network
					if on {
						if n, err = Open(context.Background(), fmt.Sprintf("r-%d", i), Options{StateDir: state, Policy: rules}); err != nil {
							b.Fatal(err)
						}
						req.Network = attachment(n)
					}
					var errb bytes.Buffer
					req.Stderr = &errb
					res, err := e.Run(context.Background(), rt, req)
					if err != nil || res.ExitCode != 0 {
						b.Fatalf("%v %+v %s", err, res, errb.String())
					}
					if n != nil {
						n.Close()
					}
				}
			})
		}
	}
}

// nsDialer dials from inside the namespace at nsPath through one thread
// that stays there for the whole benchmark (it ends with the benchmark:
// its goroutine returns still locked).
func nsDialer(b testing.TB, nsPath string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	type req struct {
		ctx           context.Context
		network, addr string
		reply         chan net.Conn
	}
	reqs := make(chan req)
	ready := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread ends in the namespace
		fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err == nil {
			err = unix.Setns(fd, unix.CLONE_NEWNET)
			unix.Close(fd)
		}
		ready <- err
		if err != nil {
			return
		}
		for r := range reqs {
			var d net.Dialer
			c, _ := d.DialContext(r.ctx, r.network, r.addr)
			r.reply <- c
		}
	}()
	if err := <-ready; err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { close(reqs) })
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		r := req{ctx, network, addr, make(chan net.Conn, 1)}
		reqs <- r
		if c := <-r.reply; c != nil {
			return c, nil
		}
		return nil, fmt.Errorf("dialing %s from the sandbox namespace failed", addr)
	}
}
