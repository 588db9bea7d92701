package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestMetricsAuth: /metrics takes the metrics token or the MCP token;
// without any token it answers only loopback host names.
func TestMetricsAuth(t *testing.T) {
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) })
	const mtok, mcptok = "metrics-token-0123456789", "mcp-token-0123456789abc"
	for _, tc := range []struct {
		name   string
		tokens []string
		host   string
		auth   string
		want   int
	}{
		{"no header", []string{mtok, mcptok}, "127.0.0.1:1", "", 401},
		{"wrong token", []string{mtok, mcptok}, "127.0.0.1:1", "Bearer nope", 401},
		{"a token's prefix", []string{mtok, mcptok}, "127.0.0.1:1", "Bearer " + mtok[:10], 401},
		{"metrics token", []string{mtok, mcptok}, "127.0.0.1:1", "Bearer " + mtok, 200},
		{"mcp token", []string{mtok, mcptok}, "127.0.0.1:1", "Bearer " + mcptok, 200},
		{"metrics token only", []string{mtok, ""}, "example.com", "Bearer " + mtok, 200},
		{"open on loopback", []string{"", ""}, "localhost:9090", "", 200},
		{"open on [::1]", nil, "[::1]:9090", "", 200},
		{"dns rebinding", []string{"", ""}, "evil.example:9090", "", 403},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", "/metrics", nil)
			r.Host = tc.host
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			w := httptest.NewRecorder()
			metricsAuth(tc.tokens, ok).ServeHTTP(w, r)
			if w.Code != tc.want {
				t.Errorf("status %d, want %d", w.Code, tc.want)
			}
		})
	}
}

// TestListenMetricsNeedsTokenOffLoopback: an open metrics endpoint is
// refused on an address other hosts can reach.
func TestListenMetricsNeedsTokenOffLoopback(t *testing.T) {
	if _, err := listenMetrics("0.0.0.0:0", []string{"", ""}); err == nil || !strings.Contains(err.Error(), "needs a token") {
		t.Errorf("open metrics on 0.0.0.0: %v", err)
	}
	ln, err := listenMetrics("127.0.0.1:0", nil)
	if err != nil {
		t.Fatal(err)
	}
	ln.Close()
}
