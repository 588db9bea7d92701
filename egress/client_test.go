package egress

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// TestClientRefusesBadRequests: what a model may put into http_request is
// checked before anything leaves vial.
func TestClientRefusesBadRequests(t *testing.T) {
	var ev events
	c, err := NewClient(ClientOptions{Policy: testRules(t), MaxRequestBytes: 10, Events: ev.add})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		req  Request
		why  string
	}{
		{"method", Request{Method: "CONNECT", URL: "http://allowed.test/"}, "method"},
		{"trace", Request{Method: "TRACE", URL: "http://allowed.test/"}, "method"},
		{"scheme", Request{URL: "file:///etc/passwd"}, "scheme"},
		{"ftp", Request{URL: "ftp://allowed.test/"}, "scheme"},
		{"relative", Request{URL: "/etc/passwd"}, "scheme"},
		{"no-host", Request{URL: "http:///x"}, "no host"},
		{"host-header", Request{URL: "http://allowed.test/", Headers: map[string]string{"host": "denied.test"}}, "Host"},
		{"proxy-header", Request{URL: "http://allowed.test/", Headers: map[string]string{"Proxy-Authorization": "x"}}, "Proxy-Authorization"},
		{"te", Request{URL: "http://allowed.test/", Headers: map[string]string{"Transfer-Encoding": "chunked"}}, "Transfer-Encoding"},
		{"newline", Request{URL: "http://allowed.test/", Headers: map[string]string{"X-A": "b\r\nHost: denied.test"}}, "line breaks"},
		{"body", Request{Method: "POST", URL: "http://allowed.test/", Body: []byte("01234567890")}, "at most 10"},
	} {
		_, err := c.Do(t.Context(), tc.req)
		if !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), tc.why) {
			t.Errorf("%s: %v; want invalid argument saying %q", tc.name, err, tc.why)
		}
	}
	// Refused by the policy before any lookup or connection.
	for _, u := range []string{"http://denied.test/", "https://localhost/", "http://127.0.0.1/", "http://[::1]/", "http://169.254.169.254/", "http://x.internal/"} {
		if _, err := c.Do(t.Context(), Request{URL: u}); !errdefs.IsPermissionDenied(err) {
			t.Errorf("GET %s: %v; want permission denied", u, err)
		}
	}
	if _, ok := ev.find(KindFetch, "denied.test", false); !ok {
		t.Error("no refusal event")
	}
	if _, err := NewClient(ClientOptions{AllowPrivateCIDRs: []string{"0.0.0.0/0"}}); !errdefs.IsInvalidArgument(err) {
		t.Errorf("NewClient with 0.0.0.0/0: %v", err)
	}
	nobody, _ := NewClient(ClientOptions{})
	if _, err := nobody.Do(t.Context(), Request{URL: "https://allowed.test/"}); !errdefs.IsPermissionDenied(err) {
		t.Errorf("a client without a policy: %v; want everything refused", err)
	}
}

func TestHTMLText(t *testing.T) {
	title, text := htmlText([]byte(`<html><head><title> T </title><script>x()</script></head>
<body><nav>Menu</nav><p>One <b>two</b>  three</p><div>Four<br>five</div><style>.a{}</style><svg><text>no</text></svg></body></html>`))
	if title != "T" || text != "Menu\nOne two three\n\nFour\nfive" {
		t.Errorf("htmlText = %q, %q", title, text)
	}
}
