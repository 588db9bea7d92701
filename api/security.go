package api

import (
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/internal/lazyre"
)

// nameRE is what an agent ID, a template name, a context ID or an approval
// ID may look like: the configuration's own rule for agent and template
// names (letters, digits, _ . and -, starting with a letter or digit, at
// most 128), which also covers context and approval IDs. Checked before a
// name reaches anything that may make a path of it.
var nameRE = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// ValidName reports whether s may name an agent, template, context or
// approval: it matches the pattern above and has no "..".
func ValidName(s string) bool {
	return nameRE.MatchString(s) && !strings.Contains(s, "..")
}

// checkName returns an invalid-argument error naming what s was meant to
// be when s is not a valid name. The name is quoted with %q and cut, so a
// hostile one cannot forge the message or make it huge.
func checkName(what, s string) error {
	if ValidName(s) {
		return nil
	}
	shown := s
	if len(shown) > 64 {
		shown = shown[:64] + "..."
	}
	return invalidf("%s %q is not a valid name (valid: letters, digits, _ . and -, starting with a letter or digit, at most 128 characters)", what, shown)
}

// SecurityHeaders sets the headers every response of the API and the page
// carries: no framing by any page (clickjacking), no content sniffing, no
// referrer, no caching, a strict content security policy (scripts and
// styles only from this origin, no inline code, nothing fetched from
// elsewhere), and a browsing context and resources of its own.
func SecurityHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", "camera=(), microphone=(), geolocation=(), interest-cohort=()")
}

// Guard wraps h with what every request of the API and the page passes
// first: the security headers, and on a loopback listener a Host that is
// a loopback name. A DNS-rebinding attack points a name the attacker owns
// at 127.0.0.1, so that the victim's browser talks to vial as the
// attacker's origin; the Host header still carries the attacker's name,
// and is refused.
func Guard(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		SecurityHeaders(w.Header())
		if !hostAllowed(r) {
			writeJSON(w, http.StatusMisdirectedRequest, errorBody{
				Error: "the Host header names no loopback address on a loopback listener (DNS rebinding?); open the page as http://127.0.0.1:PORT or http://localhost:PORT",
				Class: "misdirected request",
			})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// hostAllowed is false for a request that reached a loopback listener with
// a Host that is not a loopback address or "localhost".
func hostAllowed(r *http.Request) bool {
	la, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	if !ok {
		return true
	}
	tcp, ok := la.(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() {
		return true
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.Trim(host, "[]"), ".")
	if strings.EqualFold(host, "localhost") || strings.HasSuffix(strings.ToLower(host), ".localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// requireToken wraps h: the request must carry "Authorization: Bearer
// <token>". Both sides are hashed before the constant-time compare, so
// neither the token's length nor its content shows in the timing.
func requireToken(token string, h http.Handler) http.Handler {
	if len(token) < 16 {
		panic("api: operator token shorter than 16 characters")
	}
	want := sha256.Sum256([]byte("Bearer " + token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vial operator"`)
			writeJSON(w, http.StatusUnauthorized, errorBody{
				Error: "unauthorized: the API needs the operator token (Authorization: Bearer TOKEN; vial serve prints where it is), not an MCP client's token",
				Class: "unauthenticated",
			})
			return
		}
		h.ServeHTTP(w, r)
	})
}

// crossOrigin refuses state-changing requests a browser marks as coming
// from another origin (Sec-Fetch-Site, or Origin against Host); see the
// package documentation for why the token header alone already stops
// CSRF.
func crossOrigin(h http.Handler) http.Handler {
	c := http.NewCrossOriginProtection()
	c.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusForbidden, errorBody{
			Error: fmt.Sprintf("cross-origin %s refused: the operator API answers state-changing requests from its own page only", r.Method),
			Class: errdefs.ErrPermissionDenied.Error(),
		})
	}))
	return c.Handler(h)
}
