package downstream

import (
	"errors"
	"io"
	"mime"
	"net/http"
	"sync"

	"github.com/containerd/errdefs"
)

// errRedirect refuses redirects: a server is reached at the URL the
// operator wrote, and its bearer token goes nowhere else.
var errRedirect = errors.New("the server answered with a redirect, which vial does not follow")

// newHTTPClient returns the client for one http or sse server: every
// request carries the Authorization header auth (if not empty; set here
// rather than through mcp-go, which leaves it off the DELETE that ends a
// session), bodies are bounded (a whole response at max bytes, an event
// stream at max bytes per event), redirects are refused, and there is no
// overall timeout, since a server's event stream stays open; each request
// is bounded by its context.
func newHTTPClient(max int, auth string) *http.Client {
	base := http.DefaultTransport.(*http.Transport).Clone()
	base.MaxResponseHeaderBytes = 64 << 10
	return &http.Client{
		Transport: &limitTransport{base: base, max: int64(max), auth: auth},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return errRedirect
		},
	}
}

type limitTransport struct {
	base http.RoundTripper
	max  int64
	auth string
}

func (t *limitTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if t.auth != "" {
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", t.auth)
	}
	resp, err := t.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	resp.Body = &limitBody{rc: resp.Body, max: t.max, events: mt == "text/event-stream"}
	return resp, nil
}

// errTooLarge is what a read past the bound returns.
var errTooLarge = errorWithClass(errdefs.ErrResourceExhausted, "the server sent a message over the size bound")

// limitBody fails a read once more than max bytes arrived: in all, or for
// an event stream, since the last blank line (the end of an event).
type limitBody struct {
	rc     io.ReadCloser
	max    int64
	events bool

	mu     sync.Mutex
	n      int64
	lastNL bool
	failed bool
}

func (b *limitBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	b.mu.Lock()
	defer b.mu.Unlock()
	over := b.failed
	if !b.events {
		b.n += int64(n)
		over = b.n > b.max
	} else {
		for _, c := range p[:n] {
			switch c {
			case '\n':
				if b.lastNL {
					b.n = 0
				}
				b.lastNL = true
			case '\r':
			default:
				b.lastNL = false
				b.n++
				over = over || b.n > b.max
			}
		}
	}
	if over {
		b.failed = true // every later read fails too
		return 0, errTooLarge
	}
	return n, err
}

func (b *limitBody) Close() error { return b.rc.Close() }
