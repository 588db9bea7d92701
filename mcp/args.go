package mcp

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/vial-run/vial/internal/human"
	"github.com/vial-run/vial/internal/lazyre"
	"github.com/vial-run/vial/service"
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

var unknownField = lazyre.New(`^json: unknown field "(.*)"$`)

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
		return userErrorf("unknown argument %q; this tool takes: %s", human.Valid(m[1]), strings.Join(argNames(dst), ", "))
	}
	return userErrorf("arguments are not valid JSON for this tool: %s", human.Valid(err.Error()))
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
var contextIDPattern = lazyre.New(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

func checkContextID(id string) error {
	if id == "" || contextIDPattern.MatchString(id) {
		return nil
	}
	return userErrorf("invalid context_id %q: use an id returned by create_context or list_contexts", human.Trunc(id, 64))
}

// parseLanguage maps a language argument onto a Language.
func parseLanguage(s string) (service.Language, error) {
	l, err := service.ParseLanguage(strings.ToLower(strings.TrimSpace(s)))
	if err != nil {
		return "", userErrorf("unsupported language %q: use python, javascript or bash", human.Trunc(s, 64))
	}
	return l, nil
}

// timeout converts a timeout argument in seconds; nil asks for the
// default. The service decides the limit that applies.
func timeout(arg *float64) (time.Duration, error) {
	if arg == nil {
		return 0, nil
	}
	v := *arg
	if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
		return 0, userErrorf("invalid timeout %v: give a positive number of seconds", v)
	}
	if v > 1e6 {
		v = 1e6 // beyond any ceiling; avoids overflowing a Duration
	}
	return max(time.Duration(v*float64(time.Second)), time.Millisecond), nil
}
