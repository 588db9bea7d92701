package egress

import (
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startDNS runs a responder on loopback sockets (no namespace needed: it
// only answers, it never dials).
func startDNS(t *testing.T, ev *events) (udp, tcp string) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	d := &dnsResponder{policy: testRules(t), answer: ProxyIP, rep: newReporter("", ev.add, nil)}
	d.serve(pc, ln, newConnSet(maxDNSConns, nil))
	t.Cleanup(d.stop)
	return pc.LocalAddr().String(), ln.Addr().String()
}

func TestDNSResponder(t *testing.T) {
	var ev events
	udp, tcp := startDNS(t, &ev)
	for _, tc := range []struct {
		name  string
		qtype uint16
		rcode int
		a     bool
	}{
		{"allowed.test.", dns.TypeA, dns.RcodeSuccess, true},
		{"Allowed.Test.", dns.TypeA, dns.RcodeSuccess, true},
		{"allowed.test.", dns.TypeAAAA, dns.RcodeSuccess, false},
		{"allowed.test.", dns.TypeHTTPS, dns.RcodeSuccess, false},
		{"allowed.test.", dns.TypeTXT, dns.RcodeRefused, false},
		{"allowed.test.", dns.TypeANY, dns.RcodeRefused, false},
		{"allowed.test.", dns.TypeAXFR, dns.RcodeRefused, false},
		{"denied.test.", dns.TypeA, dns.RcodeNameError, false},
		{"localhost.", dns.TypeA, dns.RcodeNameError, false},
		{"x.internal.", dns.TypeA, dns.RcodeNameError, false},
		{"1.0.0.127.in-addr.arpa.", dns.TypePTR, dns.RcodeNameError, false},
		{"bad_label-.test.", dns.TypeA, dns.RcodeNameError, false},
	} {
		for _, netw := range []string{"udp", "tcp"} {
			addr := udp
			if netw == "tcp" {
				addr = tcp
			}
			m := new(dns.Msg)
			m.SetQuestion(tc.name, tc.qtype)
			m.SetEdns0(4096, false)
			c := &dns.Client{Net: netw, Timeout: 5 * time.Second}
			r, _, err := c.Exchange(m, addr)
			if err != nil {
				t.Fatalf("%s %s over %s: %v", tc.name, dns.TypeToString[tc.qtype], netw, err)
			}
			if r.Rcode != tc.rcode || (len(r.Answer) == 1) != tc.a || len(r.Answer) > 1 {
				t.Errorf("%s %s over %s: %s with %d answers; want %s (answer %v)", tc.name, dns.TypeToString[tc.qtype], netw,
					dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[tc.rcode], tc.a)
			}
			if tc.a && r.Answer[0].(*dns.A).A.String() != ProxyIP.String() {
				t.Errorf("%s: answer %v; want the proxy's address", tc.name, r.Answer[0])
			}
		}
	}
	// Anything but one plain query is not answered with data.
	m := new(dns.Msg)
	m.SetQuestion("allowed.test.", dns.TypeA)
	m.Question = append(m.Question, dns.Question{Name: "denied.test.", Qtype: dns.TypeA, Qclass: dns.ClassINET})
	if r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, udp); err != nil || len(r.Answer) != 0 || r.Rcode == dns.RcodeSuccess {
		t.Errorf("two questions: %v %v; want an error code and no answer", r, err)
	}
	if _, ok := ev.find(KindDNS, "denied.test", false); !ok {
		t.Error("no event for the refused name")
	}
}

// TestDNSConnLimit: a sandbox cannot hold more than maxDNSConns TCP
// connections to its DNS responder; one more is closed at once and the
// responder keeps answering.
func TestDNSConnLimit(t *testing.T) {
	defer func(n int) { maxDNSConns = n }(maxDNSConns)
	maxDNSConns = 4
	var ev events
	udp, tcp := startDNS(t, &ev)
	var held []net.Conn
	for range maxDNSConns {
		c, err := net.Dial("tcp", tcp)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		held = append(held, c)
	}
	// Make sure the server accepted the held ones before the extra one.
	for _, c := range held {
		co := &dns.Conn{Conn: c}
		m := new(dns.Msg)
		m.SetQuestion("allowed.test.", dns.TypeA)
		if err := co.WriteMsg(m); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := co.ReadMsg(); err != nil {
			t.Fatalf("a connection within the limit got no answer: %v", err)
		}
	}
	extra, err := net.Dial("tcp", tcp)
	if err != nil {
		t.Fatal(err)
	}
	defer extra.Close()
	extra.SetReadDeadline(time.Now().Add(2 * time.Second)) // well before the idle timeout
	if n, err := extra.Read(make([]byte, 1)); err == nil || n != 0 {
		t.Fatalf("connection %d past the limit was not closed: %d, %v", maxDNSConns+1, n, err)
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Fatalf("connection past the limit was held open")
	}
	m := new(dns.Msg)
	m.SetQuestion("allowed.test.", dns.TypeA)
	if r, _, err := (&dns.Client{Timeout: 5 * time.Second}).Exchange(m, udp); err != nil || len(r.Answer) != 1 {
		t.Errorf("after the limit, UDP: %v %v", r, err)
	}
}

// A sandbox that makes refused connections in a loop must not write vial's
// log as fast as it can: lines beyond the burst are left out and counted,
// while the hook still sees every event.
func TestReporterBoundsLog(t *testing.T) {
	var buf strings.Builder
	var seen int
	r := newReporter("n1", func(Event) { seen++ }, slog.New(slog.NewTextHandler(&buf, nil)))
	for range 10 * logBurst {
		r.report(Event{Kind: KindConnect, Host: "denied.test", Port: 443, Reason: "not in allowed_hosts"})
	}
	if seen != 10*logBurst {
		t.Errorf("hook saw %d events, want %d", seen, 10*logBurst)
	}
	lines := strings.Count(buf.String(), "\n")
	if lines > logBurst+logRate { // the loop may take a second on a slow machine
		t.Errorf("%d log lines for %d events, want at most about %d", lines, 10*logBurst, logBurst)
	}
	time.Sleep(50 * time.Millisecond)
	r.report(Event{Kind: KindConnect, Host: "denied.test", Port: 443})
	if !strings.Contains(buf.String(), "not_logged_before=") {
		t.Errorf("the next line does not say how many were left out:\n%s", buf.String()[max(0, buf.Len()-400):])
	}
}
