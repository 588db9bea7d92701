// Package testupstream builds a test upstream for network tests: a
// network namespace of the test's own, joined to the host by a veth pair
// the test creates (names start with "vialt"), serving HTTP, HTTPS
// (certificates from a CA the test makes) and DNS (which logs every query
// it sees). No test traffic goes anywhere else. Everything it creates is
// removed when the test ends.
package testupstream

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/vial-run/vial/internal/testutil"
)

// IfPrefix starts the name of every interface a test creates.
const IfPrefix = "vialt"

type Upstream struct {
	Prefix netip.Prefix // the /30 between host and upstream
	HostIP netip.Addr   // the host's end (an address of the host)
	IP     netip.Addr   // the upstream's end: HTTP :80, HTTPS :443, DNS :53
	CAPEM  []byte
	CA     *x509.CertPool

	HostIf string
	mu     sync.Mutex
	dnsLog []string // names the upstream's DNS server was asked
	hosts  []string // Host headers the upstream's web servers saw
	files  map[string]file
}

type file struct {
	contentType string
	body        []byte
}

// Put serves body at path, for every name, over HTTP and HTTPS: a
// package index, a wheel.
func (u *Upstream) Put(path, contentType string, body []byte) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.files == nil {
		u.files = map[string]file{}
	}
	u.files[path] = file{contentType, body}
}

// Names are the names the upstream's certificate covers and its
// DNS server answers (with its own address).
var Names = []string{"allowed.test", "dns-allowed.test", "denied.test", "other.test"}

// New builds the upstream; everything it creates is removed when
// the test ends, also when it fails.
func New(t testing.TB) *Upstream {
	t.Helper()
	testutil.RequireRoot(t)
	sweepLinks(t)
	u := &Upstream{}
	var err error
	if u.Prefix, err = freePrefix(); err != nil {
		t.Fatal(err)
	}
	u.HostIP = u.Prefix.Addr().Next()
	u.IP = u.HostIP.Next()
	var b [3]byte
	rand.Read(b[:])
	u.HostIf = IfPrefix + hex.EncodeToString(b[:]) + "h"
	peerIf := IfPrefix + hex.EncodeToString(b[:]) + "u"
	cert, err := u.makeCerts()
	if err != nil {
		t.Fatal(err)
	}

	type result struct {
		ufd           int
		web, webs, dl net.Listener
		dns           net.PacketConn
		err           error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread ends with the goroutine
		var r result
		r.err = func() error {
			home, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return err
			}
			defer unix.Close(home)
			defer unix.Setns(home, unix.CLONE_NEWNET)
			if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
				return err
			}
			if r.ufd, err = unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0); err != nil {
				return err
			}
			if err := unix.Setns(home, unix.CLONE_NEWNET); err != nil {
				return err
			}
			la := netlink.NewLinkAttrs()
			la.Name = u.HostIf
			if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: la, PeerName: peerIf, PeerNamespace: netlink.NsFd(r.ufd)}); err != nil {
				return fmt.Errorf("creating test veth: %w", err)
			}
			if err := addrUp(nil, u.HostIf, u.HostIP); err != nil {
				return err
			}
			if err := unix.Setns(r.ufd, unix.CLONE_NEWNET); err != nil {
				return err
			}
			h, err := netlink.NewHandle(unix.NETLINK_ROUTE)
			if err != nil {
				return err
			}
			defer h.Close()
			if err := addrUp(h, "lo", netip.Addr{}); err != nil {
				return err
			}
			if err := addrUp(h, peerIf, u.IP); err != nil {
				return err
			}
			tcp := func(port int) (net.Listener, error) {
				return net.Listen("tcp4", netip.AddrPortFrom(u.IP, uint16(port)).String())
			}
			if r.web, err = tcp(80); err != nil {
				return err
			}
			if r.webs, err = tcp(443); err != nil {
				return err
			}
			if r.dl, err = tcp(8080); err != nil {
				return err
			}
			r.dns, err = net.ListenPacket("udp4", netip.AddrPortFrom(u.IP, 53).String())
			return err
		}()
		ch <- r
	}()
	r := <-ch
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(u.HostIf); err == nil {
			netlink.LinkDel(l)
		}
		if r.ufd > 0 {
			unix.Close(r.ufd)
		}
	})
	if r.err != nil {
		t.Fatalf("building the test upstream: %v", r.err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(u.serve), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(r.web)
	go srv.Serve(tls.NewListener(r.webs, &tls.Config{Certificates: []tls.Certificate{cert}}))
	go srv.Serve(r.dl)
	ds := &dns.Server{PacketConn: r.dns, Handler: dns.HandlerFunc(u.serveDNS)}
	go ds.ActivateAndServe()
	t.Cleanup(func() {
		srv.Close()
		ds.Shutdown()
		r.dns.Close()
	})
	return u
}

// addrUp gives link addr/30 (if valid) and brings it up, through h (nil:
// the calling thread's namespace).
func addrUp(h *netlink.Handle, name string, addr netip.Addr) error {
	if h == nil {
		var err error
		if h, err = netlink.NewHandle(unix.NETLINK_ROUTE); err != nil {
			return err
		}
		defer h.Close()
	}
	l, err := h.LinkByName(name)
	if err != nil {
		return fmt.Errorf("finding %s: %w", name, err)
	}
	if addr.IsValid() {
		if err := h.AddrAdd(l, &netlink.Addr{IPNet: &net.IPNet{IP: addr.AsSlice(), Mask: net.CIDRMask(30, 32)}}); err != nil {
			return fmt.Errorf("addressing %s: %w", name, err)
		}
	}
	return h.LinkSetUp(l)
}

// sweepTestLinks removes test interfaces a killed test run left behind.
func sweepLinks(t testing.TB) {
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatalf("listing links: %v", err)
	}
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, IfPrefix) {
			netlink.LinkDel(l)
		}
	}
}

// testLinks lists the host's test interfaces.
func Links() []string {
	links, _ := netlink.LinkList()
	var out []string
	for _, l := range links {
		if strings.HasPrefix(l.Attrs().Name, IfPrefix) {
			out = append(out, l.Attrs().Name)
		}
	}
	return out
}

// freePrefix picks a /30 in 10.233.0.0/16 that no host route overlaps.
func freePrefix() (netip.Prefix, error) {
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		return netip.Prefix{}, err
	}
	var b [2]byte
	for range 100 {
		rand.Read(b[:])
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 233, b[0], b[1] &^ 3}), 30)
		clash := false
		for _, r := range routes {
			if r.Dst == nil {
				continue
			}
			rp, ok := netip.AddrFromSlice(r.Dst.IP)
			ones, _ := r.Dst.Mask.Size()
			if ok && ones > 0 && netip.PrefixFrom(rp.Unmap(), ones).Overlaps(p) {
				clash = true
			}
		}
		if !clash {
			return p, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /30 in 10.233.0.0/16")
}

func (u *Upstream) serve(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	u.hosts = append(u.hosts, r.Host)
	f, ok := u.files[r.URL.Path]
	u.mu.Unlock()
	if ok {
		w.Header().Set("Content-Type", f.contentType)
		w.Write(f.body)
		return
	}
	switch r.URL.Path {
	case "/big":
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "application/octet-stream")
		io.CopyN(w, Zeros{}, int64(n))
	case "/slow":
		select {
		case <-r.Context().Done():
		case <-time.After(30 * time.Second):
		}
	case "/loop":
		http.Redirect(w, r, "/loop", http.StatusFound)
	case "/to":
		http.Redirect(w, r, r.URL.Query().Get("u"), http.StatusFound)
	case "/page":
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		io.WriteString(w, `<!doctype html><html><head><title>Test page</title><style>p{color:red}</style>
<script>var secret = 1;</script></head><body><h1>Hello</h1><p>from <b>the</b> upstream</p></body></html>`)
	case "/echo":
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.Header.Get("X-Test"), b)
	default:
		proto := "http"
		if r.TLS != nil {
			proto = "https"
		}
		fmt.Fprintf(w, "hello from %s over %s\n", r.Host, proto)
	}
}

// Zeros reads as an endless stream of zero bytes.
type Zeros struct{}

func (Zeros) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

func (u *Upstream) serveDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	if len(req.Question) == 1 {
		q := req.Question[0]
		name := strings.TrimSuffix(strings.ToLower(q.Name), ".")
		u.mu.Lock()
		u.dnsLog = append(u.dnsLog, name)
		u.mu.Unlock()
		known := false
		for _, n := range Names {
			known = known || n == name
		}
		switch {
		case !known:
			m.Rcode = dns.RcodeNameError
		case q.Qtype == dns.TypeA:
			m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 5}, A: u.IP.AsSlice()}}
		}
	}
	w.WriteMsg(m)
}

// DNSLog returns the names the upstream's DNS server has been asked.
func (u *Upstream) DNSLog() []string {
	u.mu.Lock()
	defer u.mu.Unlock()
	return append([]string(nil), u.dnsLog...)
}

// Resolver resolves through the upstream's DNS server only.
func (u *Upstream) Resolver() *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, network, netip.AddrPortFrom(u.IP, 53).String())
	}}
}

// makeCerts makes a CA and a certificate for Names signed by it.
func (u *Upstream) makeCerts() (tls.Certificate, error) {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "vial test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	caCert, _ := x509.ParseCertificate(caDER)
	u.CAPEM = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER})
	u.CA = x509.NewCertPool()
	u.CA.AddCert(caCert)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "allowed.test"}, DNSNames: Names,
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// PrimaryHostAddr is an address of the host that is not loopback and not
// a test interface's.
func PrimaryHostAddr() netip.Addr {
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if strings.HasPrefix(i.Name, IfPrefix) || i.Flags&net.FlagLoopback != 0 {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() {
					return ip.Unmap()
				}
			}
		}
	}
	return netip.Addr{}
}
