package egress

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/miekg/dns"
)

// dnsTTL is short: the answer is vial's own address and never changes,
// but a policy change should not wait on client caches.
const dnsTTL = 10

// DNS bounds (variables so that their hostile tests can lower them).
var (
	// maxDNSConns bounds the TCP connections a sandbox holds to its DNS
	// responder (glibc falls back to TCP on truncation).
	maxDNSConns = 16
	dnsTimeout  = 5 * time.Second
)

// dnsResponder answers a sandbox's DNS queries from the policy alone: an
// allowed name gets one A record with the proxy's address (so that even a
// program that ignores the proxy variables ends up at vial's listeners);
// any other name gets NXDOMAIN. It never forwards a query, never
// resolves one upstream, and never reveals a real address: a name that is
// not allowed is never looked up anywhere, so the query itself cannot
// leak data to an outside resolver.
type dnsResponder struct {
	policy HostPolicy
	answer netip.Addr
	rep    *reporter

	servers []*dns.Server
	wg      sync.WaitGroup
}

func (d *dnsResponder) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	m.RecursionAvailable = true
	if o := req.IsEdns0(); o != nil {
		m.SetEdns0(1232, false)
	}
	if req.Opcode != dns.OpcodeQuery || len(req.Question) != 1 {
		m.Rcode = dns.RcodeNotImplemented
		w.WriteMsg(m)
		return
	}
	q := req.Question[0]
	name := NormalizeHost(q.Name)
	ev := Event{Time: time.Now(), Kind: KindDNS, Host: name, Query: dns.TypeToString[q.Qtype]}
	ok, why := false, "not a valid host name"
	if ValidName(name) && q.Qclass == dns.ClassINET {
		if d.policy == nil {
			why = "no host is allowed"
		} else {
			ok, why = d.policy.Allow(name, 0)
		}
	}
	ev.Allowed, ev.Reason = ok, why
	switch {
	case !ok:
		m.Rcode = dns.RcodeNameError // NXDOMAIN
	case q.Qtype == dns.TypeA:
		m.Answer = []dns.RR{&dns.A{
			Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: dnsTTL},
			A:   d.answer.AsSlice(),
		}}
	case q.Qtype == dns.TypeANY, q.Qtype == dns.TypeTXT, q.Qtype == dns.TypeAXFR, q.Qtype == dns.TypeIXFR:
		// Refused: ANY and TXT are the usual carriers of amplification
		// and of data smuggled through DNS, and nothing vial answers
		// needs them.
		m.Rcode = dns.RcodeRefused
		ev.Allowed, ev.Reason = false, "query type "+ev.Query+" is refused"
	default:
		// AAAA, HTTPS, MX, ...: the name exists, with no record of this
		// type, so clients fall back to the A record at once.
	}
	d.rep.report(ev)
	w.WriteMsg(m)
}

// serve answers on the UDP and TCP sockets opened in P.
func (d *dnsResponder) serve(udp net.PacketConn, tcp net.Listener, conns *connSet) {
	d.servers = []*dns.Server{
		{PacketConn: udp, Handler: d, UDPSize: 1232},
		{Listener: conns.listener(tcp), Handler: d, ReadTimeout: dnsTimeout, WriteTimeout: dnsTimeout,
			IdleTimeout: func() time.Duration { return dnsTimeout }},
	}
	for _, s := range d.servers {
		started, done := make(chan struct{}), make(chan struct{})
		s.NotifyStartedFunc = func() { close(started) }
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			defer close(done)
			s.ActivateAndServe()
		}()
		// Shutdown refuses a server that has not started yet.
		select {
		case <-started:
		case <-done:
		}
	}
}

func (d *dnsResponder) stop() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for _, s := range d.servers {
		s.ShutdownContext(ctx)
	}
	d.wg.Wait()
}
