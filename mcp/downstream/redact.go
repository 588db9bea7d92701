package downstream

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
)

// redactedMark replaces a secret wherever it appears.
const redactedMark = "[redacted]"

// redactor replaces one server's secrets (its bearer token) in text that
// leaves the package. A nil or empty redactor changes nothing. A server
// that holds the token can always send it back encoded; what this stops is
// the plain token, the usual way a secret leaks (an echoing server, an
// error body quoting the request).
type redactor struct {
	secrets []string
}

func newRedactor(secrets ...string) *redactor {
	r := &redactor{}
	for _, s := range secrets {
		if s != "" {
			r.secrets = append(r.secrets, s)
		}
	}
	return r
}

func (r *redactor) active() bool { return r != nil && len(r.secrets) > 0 }

func (r *redactor) replace(s string) string {
	if !r.active() {
		return s
	}
	for _, sec := range r.secrets {
		if strings.Contains(s, sec) {
			s = strings.ReplaceAll(s, sec, redactedMark)
		}
	}
	return s
}

// contains reports whether b holds a secret as it would appear in JSON.
func (r *redactor) contains(b []byte) bool {
	if !r.active() {
		return false
	}
	for _, sec := range r.secrets {
		enc, _ := json.Marshal(sec)
		if strings.Contains(string(b), sec) || strings.Contains(string(b), string(enc[1:len(enc)-1])) {
			return true
		}
	}
	return false
}

// walk returns v (decoded JSON) with every string, keys included, passed
// through replace.
func (r *redactor) walk(v any) any {
	switch x := v.(type) {
	case string:
		return r.replace(x)
	case []any:
		for i := range x {
			x[i] = r.walk(x[i])
		}
		return x
	case map[string]any:
		out := make(map[string]any, len(x))
		for k, e := range x {
			out[r.replace(k)] = r.walk(e)
		}
		return out
	default:
		return v
	}
}

// json rewrites a JSON document with every secret replaced, decoding and
// re-encoding it only if a secret is there.
func (r *redactor) json(b []byte) ([]byte, error) {
	if !r.contains(b) {
		return b, nil
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, err
	}
	return json.Marshal(r.walk(v))
}

// redactHandler is a slog.Handler that replaces secrets in the message and
// in every attribute before passing a record on. It also demotes records
// below min to min (mcp-go logs routine events at Info and Error), so that
// the library's own lines go to vial's log at debug level.
type redactHandler struct {
	next slog.Handler
	red  *redactor
	max  slog.Level // records above this are lowered to it
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.next.Enabled(ctx, min(l, h.max))
}

func (h *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	out := slog.NewRecord(rec.Time, min(rec.Level, h.max), h.red.replace(rec.Message), rec.PC)
	rec.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.attr(a))
		return true
	})
	return h.next.Handle(ctx, out)
}

func (h *redactHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.red.replace(v.String()))
	case slog.KindGroup:
		var as []any
		for _, g := range v.Group() {
			as = append(as, h.attr(g))
		}
		return slog.Group(a.Key, as...)
	case slog.KindAny:
		return slog.String(a.Key, h.red.replace(fmt.Sprint(v.Any())))
	default:
		return slog.Attr{Key: a.Key, Value: v}
	}
}

func (h *redactHandler) WithAttrs(as []slog.Attr) slog.Handler {
	clean := make([]slog.Attr, len(as))
	for i, a := range as {
		clean[i] = h.attr(a)
	}
	return &redactHandler{next: h.next.WithAttrs(clean), red: h.red, max: h.max}
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	return &redactHandler{next: h.next.WithGroup(name), red: h.red, max: h.max}
}
