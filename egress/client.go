package egress

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/containerd/errdefs"
	"golang.org/x/net/html"

	"github.com/vial-run/vial/internal/human"
)

// ClientOptions configure vial's own HTTP requests: the http_request and
// fetch_url tools, made by vial from its own network namespace under the
// same rules as a sandbox's proxy.
type ClientOptions struct {
	Policy            HostPolicy        // nil refuses everything
	Hosts             map[string]string // as Options.Hosts
	AllowPrivateCIDRs []string          // as Options.AllowPrivateCIDRs
	Resolver          *net.Resolver     // as Options.Resolver
	// RootCAs verifies servers; nil means the host's CA certificates.
	RootCAs *x509.CertPool
	Events  func(Event)  // every request and redirect hop, as KindFetch
	Log     *slog.Logger // nil discards

	// Bounds; zero takes the default in brackets.
	Timeout         time.Duration // whole request, redirects and body included [30s]
	MaxBodyBytes    int64         // response body kept; the rest is cut off [1 MiB]
	MaxRequestBytes int64         // request body accepted [1 MiB]
	MaxRedirects    int           // redirects followed, each checked again; <0 follows none [5]
	MaxTextBytes    int           // Fetch's text [256 KiB]
}

// Client makes HTTP requests on vial's own behalf. Every request and every
// redirect hop is checked like a sandbox's connection: the name against
// the HostPolicy, the addresses it resolves to against the private-address
// check; TLS is verified normally. It is safe for concurrent use.
type Client struct {
	o    ClientOptions
	dial *dialer
	rep  *reporter
	hc   *http.Client
}

// NewClient checks o and returns a Client.
func NewClient(o ClientOptions) (*Client, error) {
	d, err := newDialer(o.Hosts, o.AllowPrivateCIDRs, o.Resolver)
	if err != nil {
		return nil, err
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	if o.Timeout <= 0 {
		o.Timeout = 30 * time.Second
	}
	if o.MaxBodyBytes <= 0 {
		o.MaxBodyBytes = 1 << 20
	}
	if o.MaxRequestBytes <= 0 {
		o.MaxRequestBytes = 1 << 20
	}
	if o.MaxRedirects == 0 {
		o.MaxRedirects = 5
	}
	if o.MaxTextBytes <= 0 {
		o.MaxTextBytes = 256 << 10
	}
	c := &Client{o: o, dial: d, rep: newReporter("", o.Events, o.Log)}
	tr := &http.Transport{
		Proxy:                  nil, // vial's requests never go through the host's proxy settings
		DialContext:            c.dialChecked,
		TLSClientConfig:        &tls.Config{RootCAs: o.RootCAs, MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    10 * time.Second,
		ResponseHeaderTimeout:  o.Timeout,
		MaxResponseHeaderBytes: 64 << 10,
		MaxIdleConns:           8,
		IdleConnTimeout:        30 * time.Second,
	}
	c.hc = &http.Client{
		Transport:     &eventTransport{c: c, next: tr},
		CheckRedirect: c.checkRedirect,
	}
	return c, nil
}

func (c *Client) allow(host string, port int) (bool, string) {
	if c.o.Policy == nil {
		return false, "no host is allowed"
	}
	return c.o.Policy.Allow(host, port)
}

// dialChecked is the transport's only way out: the policy again (a hop
// nobody checked cannot slip through), then the private-address check.
func (c *Client) dialChecked(ctx context.Context, _, addr string) (net.Conn, error) {
	host, port, err := splitTarget(addr, 0)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	if ok, why := c.allow(host, port); !ok {
		return nil, &DeniedError{Host: host, Port: port, Reason: why}
	}
	conn, _, err := c.dial.dial(ctx, host, port)
	return conn, err
}

func (c *Client) checkRedirect(req *http.Request, via []*http.Request) error {
	if c.o.MaxRedirects < 0 || len(via) > c.o.MaxRedirects {
		return fmt.Errorf("stopped after %d redirects: %w", len(via)-1, errdefs.ErrResourceExhausted)
	}
	if req.URL.Scheme != "http" && req.URL.Scheme != "https" {
		return fmt.Errorf("redirect to %s: %w: only http and https are followed", req.URL.Redacted(), errdefs.ErrPermissionDenied)
	}
	return nil
}

// eventTransport checks the policy for each hop before anything is sent,
// and reports each hop as an Event when its body is closed.
type eventTransport struct {
	c    *Client
	next http.RoundTripper
}

func (t *eventTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	ev := Event{Time: time.Now(), Kind: KindFetch}
	host, port, err := urlTarget(req.URL)
	if err != nil {
		return nil, err
	}
	ev.Host, ev.Port = host, port
	ok, why := t.c.allow(host, port)
	ev.Reason = why
	if !ok {
		t.c.rep.report(ev)
		return nil, &DeniedError{Host: host, Port: port, Reason: why}
	}
	var mu sync.Mutex
	ctx := httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		mu.Lock()
		ev.Addr = i.Conn.RemoteAddr().String()
		mu.Unlock()
	}})
	if req.ContentLength > 0 {
		ev.Up = req.ContentLength
	}
	resp, err := t.next.RoundTrip(req.WithContext(ctx))
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		var de *DeniedError
		if errors.As(err, &de) {
			ev.Reason = de.Reason
		} else {
			ev.Allowed, ev.Err = true, err.Error()
		}
		ev.Duration = time.Since(ev.Time)
		t.c.rep.report(ev)
		return nil, err
	}
	ev.Allowed = true
	resp.Body = &reportingBody{ReadCloser: resp.Body, ev: ev, rep: t.c.rep}
	return resp, nil
}

type reportingBody struct {
	io.ReadCloser
	ev   Event
	rep  *reporter
	once sync.Once
}

func (b *reportingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.ev.Down += int64(n)
	return n, err
}

func (b *reportingBody) Close() error {
	err := b.ReadCloser.Close()
	b.once.Do(func() {
		b.ev.Duration = time.Since(b.ev.Time)
		b.rep.report(b.ev)
	})
	return err
}

// urlTarget returns the normalized host and port a URL leads to.
func urlTarget(u *url.URL) (string, int, error) {
	def := 80
	switch u.Scheme {
	case "http":
	case "https":
		def = 443
	default:
		return "", 0, fmt.Errorf("URL scheme %q: %w: only http and https", u.Scheme, errdefs.ErrInvalidArgument)
	}
	if u.Host == "" {
		return "", 0, fmt.Errorf("URL %q: %w: no host", u.Redacted(), errdefs.ErrInvalidArgument)
	}
	host, port, err := splitTarget(u.Host, def)
	if err != nil {
		return "", 0, fmt.Errorf("URL %q: %w: %w", u.Redacted(), errdefs.ErrInvalidArgument, err)
	}
	return host, port, nil
}

// Request is an HTTP request for Do.
type Request struct {
	Method  string            // GET when empty
	URL     string            // absolute http:// or https:// URL
	Headers map[string]string // request headers; connection-level ones are refused
	Body    []byte
}

// Response is what Do returns. An HTTP error status is a response, not an
// error.
type Response struct {
	URL        string // the final URL, after redirects
	Status     int
	StatusText string
	Header     http.Header
	Body       []byte
	Truncated  bool // the body was longer than MaxBodyBytes and was cut off
	Duration   time.Duration
}

// methods Do accepts: the standard ones that carry no connection-level
// meaning (CONNECT and TRACE are refused).
var methods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

// forbiddenHeaders describe the connection, not the request: Host would
// send a request for one name to the address of another (name-level
// filtering relies on the two agreeing); the rest are hop-by-hop or set by
// the client itself.
var forbiddenHeaders = []string{
	"Host", "Connection", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Proxy-Authenticate",
	"Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length",
}

// Do sends req and reads the response body up to MaxBodyBytes. Refusals
// are *DeniedError (errdefs.ErrPermissionDenied); bad requests carry
// errdefs.ErrInvalidArgument; an unreachable upstream errdefs.ErrUnavailable.
func (c *Client) Do(ctx context.Context, r Request) (*Response, error) {
	start := time.Now()
	hreq, err := c.newRequest(ctx, r)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.o.Timeout)
	defer cancel()
	resp, err := c.hc.Do(hreq.WithContext(ctx))
	if err != nil {
		return nil, classify(err)
	}
	defer resp.Body.Close()
	body, truncated, err := readCapped(resp.Body, c.o.MaxBodyBytes)
	if err != nil {
		return nil, fmt.Errorf("reading the response from %s: %w", resp.Request.URL.Redacted(), errors.Join(errdefs.ErrUnavailable, err))
	}
	return &Response{
		URL: resp.Request.URL.String(), Status: resp.StatusCode, StatusText: http.StatusText(resp.StatusCode),
		Header: resp.Header, Body: body, Truncated: truncated, Duration: time.Since(start),
	}, nil
}

func (c *Client) newRequest(ctx context.Context, r Request) (*http.Request, error) {
	method := strings.ToUpper(r.Method)
	if method == "" {
		method = http.MethodGet
	}
	if !slices.Contains(methods, method) {
		return nil, fmt.Errorf("method %q: %w: use one of %s", r.Method, errdefs.ErrInvalidArgument, strings.Join(methods, ", "))
	}
	u, err := url.Parse(r.URL)
	if err != nil {
		return nil, fmt.Errorf("URL %q: %w: %w", r.URL, errdefs.ErrInvalidArgument, err)
	}
	if _, _, err := urlTarget(u); err != nil {
		return nil, err
	}
	if int64(len(r.Body)) > c.o.MaxRequestBytes {
		return nil, fmt.Errorf("request body of %d bytes: %w: at most %d", len(r.Body), errdefs.ErrInvalidArgument, c.o.MaxRequestBytes)
	}
	var body io.Reader
	if len(r.Body) > 0 {
		body = strings.NewReader(string(r.Body))
	}
	hreq, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", errdefs.ErrInvalidArgument, err)
	}
	for k, v := range r.Headers {
		ck := http.CanonicalHeaderKey(k)
		if slices.Contains(forbiddenHeaders, ck) {
			return nil, fmt.Errorf("header %q: %w: it is set by vial", ck, errdefs.ErrInvalidArgument)
		}
		if strings.ContainsAny(k+v, "\r\n") {
			return nil, fmt.Errorf("header %q: %w: line breaks are not allowed", k, errdefs.ErrInvalidArgument)
		}
		hreq.Header.Set(ck, v)
	}
	if hreq.Header.Get("User-Agent") == "" {
		hreq.Header.Set("User-Agent", "vial")
	}
	return hreq, nil
}

// classify keeps a refusal's class and marks the rest unavailable.
func classify(err error) error {
	var de *DeniedError
	switch {
	case errors.As(err, &de):
		return de
	case errdefs.IsResourceExhausted(err), errdefs.IsPermissionDenied(err), errdefs.IsInvalidArgument(err):
		return err
	case errors.Is(err, context.DeadlineExceeded):
		return fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
	}
	return fmt.Errorf("%w: %w", errdefs.ErrUnavailable, err)
}

func readCapped(r io.Reader, max int64) ([]byte, bool, error) {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if int64(len(b)) > max {
		return b[:max], true, nil
	}
	return b, false, err
}

// Page is what Fetch returns: a page as text.
type Page struct {
	URL         string // the final URL, after redirects
	Status      int
	ContentType string
	Title       string // an HTML page's <title>
	// Text is the page's text: HTML reduced to its visible text, other
	// text types as they are; a note for binary content, which is not
	// shown.
	Text      string
	Truncated bool // the body or the text was cut off
}

// Fetch GETs url and returns it as text, within the same bounds as Do and
// at most MaxTextBytes of text.
func (c *Client) Fetch(ctx context.Context, rawURL string) (*Page, error) {
	resp, err := c.Do(ctx, Request{Method: "GET", URL: rawURL, Headers: map[string]string{
		"Accept": "text/html, text/plain;q=0.9, application/json;q=0.8, */*;q=0.5",
	}})
	if err != nil {
		return nil, err
	}
	p := &Page{URL: resp.URL, Status: resp.Status, ContentType: resp.Header.Get("Content-Type"), Truncated: resp.Truncated}
	mt, _, _ := mime.ParseMediaType(p.ContentType)
	switch {
	case mt == "text/html" || mt == "application/xhtml+xml" || (mt == "" && looksLikeHTML(resp.Body)):
		p.Title, p.Text = htmlText(resp.Body)
	case isText(mt) || (mt == "" && utf8.Valid(resp.Body)):
		p.Text = string(resp.Body)
	default:
		p.Text = fmt.Sprintf("(%s content, %d bytes: not text, not shown; http_request returns raw bodies)", mt, len(resp.Body))
	}
	p.Text = strings.ToValidUTF8(p.Text, "\uFFFD")
	if len(p.Text) > c.o.MaxTextBytes {
		p.Text, p.Truncated = human.Prefix(p.Text, c.o.MaxTextBytes), true
	}
	return p, nil
}

func isText(mt string) bool {
	return strings.HasPrefix(mt, "text/") || mt == "application/json" || mt == "application/xml" ||
		mt == "application/javascript" || strings.HasSuffix(mt, "+json") || strings.HasSuffix(mt, "+xml")
}

func looksLikeHTML(b []byte) bool {
	head := strings.ToLower(string(b[:min(len(b), 512)]))
	return strings.Contains(head, "<html") || strings.Contains(head, "<!doctype html")
}

// htmlText reduces an HTML document to its title and visible text: no
// scripts, styles or markup; one line per block element.
func htmlText(doc []byte) (title, text string) {
	z := html.NewTokenizer(strings.NewReader(string(doc)))
	var b strings.Builder
	skip := 0 // depth inside script, style, ...
	inTitle := false
	blocks := map[string]bool{
		"p": true, "div": true, "br": true, "li": true, "tr": true, "h1": true, "h2": true, "h3": true,
		"h4": true, "h5": true, "h6": true, "pre": true, "section": true, "article": true, "table": true,
		"ul": true, "ol": true, "header": true, "footer": true, "blockquote": true, "hr": true,
	}
	hidden := map[string]bool{"script": true, "style": true, "noscript": true, "template": true, "svg": true}
	for {
		tt := z.Next()
		switch tt {
		case html.ErrorToken:
			return strings.TrimSpace(title), tidy(b.String())
		case html.StartTagToken, html.SelfClosingTagToken:
			name, _ := z.TagName()
			tag := string(name)
			if hidden[tag] && tt == html.StartTagToken {
				skip++
			}
			if tag == "title" {
				inTitle = tt == html.StartTagToken
			}
			if blocks[tag] {
				b.WriteByte('\n')
			}
		case html.EndTagToken:
			name, _ := z.TagName()
			tag := string(name)
			if hidden[tag] && skip > 0 {
				skip--
			}
			if tag == "title" {
				inTitle = false
			}
			if blocks[tag] {
				b.WriteByte('\n')
			}
		case html.TextToken:
			t := string(z.Text())
			switch {
			case inTitle:
				title += t
			case skip == 0:
				words := strings.Join(strings.Fields(t), " ")
				if words == "" {
					if t != "" {
						b.WriteByte(' ')
					}
					continue
				}
				if isSpace(t[0]) {
					b.WriteByte(' ')
				}
				b.WriteString(words)
				if isSpace(t[len(t)-1]) {
					b.WriteByte(' ')
				}
			}
		}
	}
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' || c == '\f' }

// tidy trims each line and drops runs of empty lines.
func tidy(s string) string {
	var out []string
	blank := false
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(l)
		if l == "" {
			if !blank && len(out) > 0 {
				out = append(out, "")
			}
			blank = true
			continue
		}
		blank = false
		out = append(out, l)
	}
	return strings.TrimSpace(strings.Join(out, "\n"))
}
