package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/vial-run/vial/internal/lazyre"
)

// A JSON body is validated as the TOML file it stands for: jsonToTOML
// writes one line per leaf, as a dotted key ("sandbox.timeout_seconds =
// 60"), and remembers where in the JSON each line's key was written, so
// that a problem the configuration reports at a TOML line is shown at the
// JSON key it came from.

// jsonPos is where a member's key was written in a JSON body.
type jsonPos struct {
	Path      string // dotted key, as configuration messages write it
	Line, Col int
}

// maxJSONDepth bounds nesting: a configuration is a few levels deep, and a
// body of ten thousand brackets must not exhaust the stack.
const maxJSONDepth = 32

var bareKeyRE = lazyre.New(`^[A-Za-z0-9_-]+$`)

// tomlKey writes one part of a key, quoting it unless it is bare.
func tomlKey(k string) string {
	if bareKeyRE.MatchString(k) {
		return k
	}
	return tomlString(k)
}

// tomlString writes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r == '\r':
			b.WriteString(`\r`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// jsonError is a JSON body that cannot stand for a TOML file, at the place
// that shows it.
type jsonError struct {
	Line, Col int
	Msg       string
}

func (e *jsonError) Error() string {
	return fmt.Sprintf("line %d, column %d: %s", e.Line, e.Col, e.Msg)
}

// jsonToTOML converts a JSON object to TOML. lines[i] is where the key of
// TOML line i+1 was written in the JSON. A body that is not one JSON
// object, holds null, or nests deeper than maxJSONDepth is an error
// naming the place.
func jsonToTOML(body []byte) (out []byte, lines []jsonPos, err error) {
	c := &converter{src: body, dec: json.NewDecoder(bytes.NewReader(body))}
	c.dec.UseNumber()
	tok, err := c.dec.Token()
	if err != nil {
		return nil, nil, c.syntax(err)
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return nil, nil, c.errAt(0, "the body must be one JSON object, e.g. {\"sandbox\": {\"timeout_seconds\": 60}}")
	}
	if err := c.object("", 1); err != nil {
		return nil, nil, err
	}
	if _, err := c.dec.Token(); err != io.EOF {
		return nil, nil, c.errAt(c.dec.InputOffset(), "unexpected data after the JSON object")
	}
	return c.out.Bytes(), c.lines, nil
}

type converter struct {
	src   []byte
	dec   *json.Decoder
	out   bytes.Buffer
	lines []jsonPos
}

// pos converts a byte offset of the body to line and column (columns
// count characters, from 1).
func (c *converter) pos(off int64) (line, col int) {
	if off > int64(len(c.src)) {
		off = int64(len(c.src))
	}
	before := c.src[:off]
	line = bytes.Count(before, []byte("\n")) + 1
	start := bytes.LastIndexByte(before, '\n') + 1
	return line, utf8.RuneCount(before[start:]) + 1
}

func (c *converter) errAt(off int64, format string, args ...any) error {
	l, col := c.pos(off)
	return &jsonError{Line: l, Col: col, Msg: fmt.Sprintf(format, args...)}
}

func (c *converter) syntax(err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return c.errAt(se.Offset, "%v", se)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return c.errAt(int64(len(c.src)), "the JSON ends early")
	}
	return c.errAt(c.dec.InputOffset(), "%v", err)
}

// keyStart finds where the key read last begins: after the previous
// token come only white space, ',' and ':'.
func (c *converter) keyStart(prev int64) int64 {
	for prev < int64(len(c.src)) && strings.IndexByte(" \t\r\n,", c.src[prev]) >= 0 {
		prev++
	}
	return prev
}

// object converts the members of an object whose '{' was read, under the
// dotted prefix.
func (c *converter) object(prefix string, depth int) error {
	if depth > maxJSONDepth {
		return c.errAt(c.dec.InputOffset(), "nested deeper than %d levels", maxJSONDepth)
	}
	empty := true
	for {
		prev := c.dec.InputOffset()
		tok, err := c.dec.Token()
		if err != nil {
			return c.syntax(err)
		}
		if d, ok := tok.(json.Delim); ok && d == '}' {
			if empty && prefix != "" {
				c.line(prefix, prev, "{}")
			}
			return nil
		}
		empty = false
		key := tok.(string) // object keys are strings, or Token fails
		start := c.keyStart(prev)
		path := tomlKey(key)
		if prefix != "" {
			path = prefix + "." + path
		}
		vtok, err := c.dec.Token()
		if err != nil {
			return c.syntax(err)
		}
		if d, ok := vtok.(json.Delim); ok && d == '{' {
			if err := c.object(path, depth+1); err != nil {
				return err
			}
			continue
		}
		if vtok == nil {
			return c.errAt(start, "%s is null, which TOML cannot write (leave the key out instead)", path)
		}
		v, err := c.inline(vtok, path, depth+1)
		if err != nil {
			return err
		}
		c.line(path, start, v)
	}
}

// line writes "path = value" and remembers where its key was.
func (c *converter) line(path string, keyOff int64, value string) {
	l, col := c.pos(keyOff)
	c.out.WriteString(path + " = " + value + "\n")
	c.lines = append(c.lines, jsonPos{Path: path, Line: l, Col: col})
}

// inline converts a value whose first token was read to an inline TOML
// value.
func (c *converter) inline(tok json.Token, path string, depth int) (string, error) {
	if depth > maxJSONDepth {
		return "", c.errAt(c.dec.InputOffset(), "nested deeper than %d levels", maxJSONDepth)
	}
	switch v := tok.(type) {
	case nil:
		return "", c.errAt(c.dec.InputOffset(), "%s is null, which TOML cannot write (leave the key out instead)", path)
	case bool:
		return strconv.FormatBool(v), nil
	case json.Number:
		return v.String(), nil // JSON numbers are valid TOML numbers
	case string:
		return tomlString(v), nil
	case json.Delim:
		switch v {
		case '[':
			var parts []string
			for i := 0; ; i++ {
				t, err := c.dec.Token()
				if err != nil {
					return "", c.syntax(err)
				}
				if d, ok := t.(json.Delim); ok && d == ']' {
					return "[" + strings.Join(parts, ", ") + "]", nil
				}
				s, err := c.inline(t, fmt.Sprintf("%s[%d]", path, i), depth+1)
				if err != nil {
					return "", err
				}
				parts = append(parts, s)
			}
		case '{':
			var parts []string
			for {
				t, err := c.dec.Token()
				if err != nil {
					return "", c.syntax(err)
				}
				if d, ok := t.(json.Delim); ok && d == '}' {
					if len(parts) == 0 {
						return "{}", nil
					}
					return "{ " + strings.Join(parts, ", ") + " }", nil
				}
				k := t.(string)
				vt, err := c.dec.Token()
				if err != nil {
					return "", c.syntax(err)
				}
				s, err := c.inline(vt, path+"."+tomlKey(k), depth+1)
				if err != nil {
					return "", err
				}
				parts = append(parts, tomlKey(k)+" = "+s)
			}
		}
	}
	return "", c.errAt(c.dec.InputOffset(), "unexpected %v", tok)
}

// decodeOverrides reads a JSON object of runtime overrides, keeping
// integers as int64 (a JSON number is a float64 otherwise).
func decodeOverrides(body []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, invalidf("the overrides are not valid JSON: %v", err)
	}
	if dec.More() {
		return nil, invalidf("the overrides must be one JSON object")
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, invalidf("the overrides must be a JSON object, e.g. {\"sandbox\": {\"timeout_seconds\": 180}}")
	}
	out, err := numbers(m, 1)
	if err != nil {
		return nil, err
	}
	return out.(map[string]any), nil
}

func numbers(v any, depth int) (any, error) {
	if depth > maxJSONDepth {
		return nil, invalidf("the overrides nest deeper than %d levels", maxJSONDepth)
	}
	switch v := v.(type) {
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return i, nil
		}
		f, err := v.Float64()
		if err != nil {
			return nil, invalidf("%s is not a number vial can use", v)
		}
		return f, nil
	case map[string]any:
		for k, e := range v {
			n, err := numbers(e, depth+1)
			if err != nil {
				return nil, err
			}
			v[k] = n
		}
	case []any:
		for i, e := range v {
			n, err := numbers(e, depth+1)
			if err != nil {
				return nil, err
			}
			v[i] = n
		}
	case nil:
		return nil, invalidf("null has no TOML equivalent: leave the key out instead")
	}
	return v, nil
}
