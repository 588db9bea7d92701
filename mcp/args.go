package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/vial-run/vial/runtime"
)

// decodeArgs decodes a call's arguments into dst (a pointer to a struct
// with json tags) strictly: unknown arguments and wrong JSON types are
// errors whose text tells the model what to send instead.
func decodeArgs(req mcpgo.CallToolRequest, dst any) error {
	raw := req.Params.RawArguments
	if len(raw) == 0 && req.Params.Arguments != nil {
		b, err := json.Marshal(req.Params.Arguments)
		if err != nil {
			return userErrorf("arguments must be a JSON object")
		}
		raw = b
	}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		raw = []byte("{}")
	}
	if raw[0] != '{' {
		return userErrorf("arguments must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(dst); err != nil {
		return argDecodeError(err, dst)
	}
	return nil
}

var unknownField = regexp.MustCompile(`^json: unknown field "(.*)"$`)

// argDecodeError rewrites a json decoding error as advice for the model.
func argDecodeError(err error, dst any) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			return userErrorf("arguments must be a JSON object")
		}
		return userErrorf("invalid argument %q: expected %s, got a JSON %s", field, jsonKind(te.Type), te.Value)
	}
	if m := unknownField.FindStringSubmatch(err.Error()); m != nil {
		return userErrorf("unknown argument %q; this tool takes: %s", sanitize(m[1]), strings.Join(argNames(dst), ", "))
	}
	return userErrorf("arguments are not valid JSON for this tool: %s", sanitize(err.Error()))
}

// jsonKind names the JSON type that decodes into t.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "a boolean"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	default:
		return "an object"
	}
}

// argNames lists the json names of dst's fields.
func argNames(dst any) []string {
	t := reflect.TypeOf(dst)
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	var names []string
	for i := range t.NumField() {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ",")
		if name != "" && name != "-" {
			names = append(names, name)
		}
	}
	return names
}

// contextIDPattern is what a context id may look like. Ids come from the
// model; checking them here gives a clear answer before the engine (which
// validates again before using one in a path) sees them.
var contextIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func checkContextID(id string) error {
	if id == "" || contextIDPattern.MatchString(id) {
		return nil
	}
	return userErrorf("invalid context_id %q: use an id returned by create_context or list_contexts", truncateRunes(id, 64))
}

// parseLanguage maps a language argument onto a runtime.Language.
func parseLanguage(s string) (runtime.Language, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "python", "python3", "py":
		return runtime.Python, nil
	case "javascript", "js", "node", "nodejs":
		return runtime.JavaScript, nil
	case "bash", "shell", "sh":
		return runtime.Bash, nil
	}
	return "", userErrorf("unsupported language %q: use python, javascript or bash", truncateRunes(s, 64))
}

// timeout resolves a timeout argument in seconds against the limits: nil
// takes the default; a value may lower the limit but is clamped to the
// ceiling. clamped reports that the ceiling applied.
func (s *Server) timeout(arg *float64) (d time.Duration, clamped bool, err error) {
	if arg == nil {
		return s.limits.DefaultTimeout, false, nil
	}
	v := *arg
	if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
		return 0, false, userErrorf("invalid timeout %v: give a positive number of seconds (at most %s)", v, fmtDuration(s.limits.MaxTimeout))
	}
	if v >= s.limits.MaxTimeout.Seconds() {
		return s.limits.MaxTimeout, v > s.limits.MaxTimeout.Seconds(), nil
	}
	d = time.Duration(v * float64(time.Second))
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return d, false, nil
}

// checkCode enforces the code size limit.
func (s *Server) checkCode(what, code string) error {
	if code == "" {
		return userErrorf("missing argument %q", what)
	}
	if len(code) > s.limits.MaxCodeBytes {
		return userErrorf("%s is %s, above the %s limit; split it up or write it to a file with write_file and run the file",
			what, fmtBytes(uint64(len(code))), fmtBytes(uint64(s.limits.MaxCodeBytes)))
	}
	return nil
}

func truncateRunes(s string, n int) string {
	s = sanitize(s)
	if len([]rune(s)) <= n {
		return s
	}
	return string([]rune(s)[:n]) + "…"
}

func fmtBytes(n uint64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

func fmtDuration(d time.Duration) string {
	switch {
	case d < 10*time.Millisecond:
		return strconv.FormatFloat(float64(d.Microseconds())/1000, 'f', 1, 64) + "ms"
	case d < time.Second:
		return fmt.Sprintf("%dms", d.Milliseconds())
	}
	return strconv.FormatFloat(d.Round(time.Millisecond).Seconds(), 'f', -1, 64) + "s"
}
