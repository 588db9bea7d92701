package web

import (
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

func TestServesThePage(t *testing.T) {
	srv := httptest.NewServer(Handler())
	defer srv.Close()
	for _, tc := range []struct {
		method, path string
		status       int
		ctype        string
	}{
		{"GET", "/", 200, "text/html; charset=utf-8"},
		{"GET", "/app.js", 200, "text/javascript; charset=utf-8"},
		{"GET", "/app.css", 200, "text/css; charset=utf-8"},
		{"GET", "/favicon.svg", 200, "image/svg+xml"},
		{"HEAD", "/", 200, "text/html; charset=utf-8"},
		{"GET", "/static/index.html", 404, ""},
		{"GET", "/../go.mod", 404, ""},
		{"POST", "/", 405, ""},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, nil)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != tc.status || (tc.ctype != "" && res.Header.Get("Content-Type") != tc.ctype) {
			t.Errorf("%s %s: %d %q", tc.method, tc.path, res.StatusCode, res.Header.Get("Content-Type"))
		}
		h := res.Header
		if h.Get("X-Frame-Options") != "DENY" || !strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors 'none'") ||
			!strings.Contains(h.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("%s %s: security headers missing: %v", tc.method, tc.path, h)
		}
	}
}

// TestNoInlineCode: the content security policy allows scripts and styles
// from this origin only, so the page must carry none inline (they would
// not run), and the script must never parse server data as markup.
func TestNoInlineCode(t *testing.T) {
	html, _ := static.ReadFile("static/index.html")
	if m := regexp.MustCompile(`<script(?:(?:\s+[a-z-]+(?:="[^"]*")?)*)>`).FindAllString(string(html), -1); len(m) != 1 || !strings.Contains(m[0], `src="/app.js"`) {
		t.Errorf("script tags: %q", m)
	}
	for _, bad := range []string{"<style", ` style="`, ` onclick=`, ` onload=`, ` onsubmit=`, "javascript:"} {
		if strings.Contains(string(html), bad) {
			t.Errorf("index.html contains %q", bad)
		}
	}
	js, _ := static.ReadFile("static/app.js")
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(", "new Function", "localStorage"} {
		if strings.Contains(string(js), bad) {
			t.Errorf("app.js uses %s", bad)
		}
	}
	res := httptest.NewRecorder()
	Handler().ServeHTTP(res, httptest.NewRequest("GET", "/", nil))
	body, _ := io.ReadAll(res.Body)
	if !strings.Contains(string(body), `id="login-form"`) {
		t.Error("the page has no sign-in form")
	}
}
