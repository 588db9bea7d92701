package policy

import (
	"bytes"
	"encoding/json"
	"math"
	"math/big"
	"strings"
	"testing"
)

func decodeNumbers(t *testing.T, s string) map[string]any {
	t.Helper()
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var m map[string]any
	if err := d.Decode(&m); err != nil {
		t.Fatalf("decoding %s: %v", s, err)
	}
	return m
}

func TestCanonicalArgs(t *testing.T) {
	type point struct {
		X int `json:"x"`
		Y int `json:"y"`
	}
	tests := []struct {
		name string
		args map[string]any
		want string
	}{
		{"nil", nil, `{}`},
		{"sorted keys", map[string]any{"b": 1, "a": 2, "B": 3}, `{"B":3,"a":2,"b":1}`},
		{"nested", map[string]any{"z": map[string]any{"y": []any{true, nil, "s"}, "x": false}}, `{"z":{"x":false,"y":[true,null,"s"]}}`},
		{"float integral", map[string]any{"n": 1.0}, `{"n":1}`},
		{"float fraction", map[string]any{"n": 0.1}, `{"n":0.1}`},
		{"negative zero", map[string]any{"n": math.Copysign(0, -1)}, `{"n":0}`},
		{"big float", map[string]any{"n": 1e21}, `{"n":1e+21}`},
		{"below 1e21", map[string]any{"n": 1e20}, `{"n":100000000000000000000}`},
		{"small float", map[string]any{"n": 1e-7}, `{"n":1e-7}`},
		{"1e-6", map[string]any{"n": 1e-6}, `{"n":0.000001}`},
		{"ints", map[string]any{"a": int8(-3), "b": uint64(math.MaxUint64), "c": int64(math.MinInt64)}, `{"a":-3,"b":18446744073709551615,"c":-9223372036854775808}`},
		{"big int", map[string]any{"n": new(big.Int).Lsh(big.NewInt(1), 100)}, `{"n":1.267650600228229401496703205376e+30}`},
		{"NaN", map[string]any{"n": math.NaN(), "i": math.Inf(-1)}, `{"i":"-Inf","n":"NaN"}`},
		{"escapes", map[string]any{"s": "a\"b\\c\n\t\x01\u2028é<&>"}, `{"s":"a\"b\\c\n\t\u0001\u2028é<&>"}`},
		{"invalid utf-8", map[string]any{"s": "a\xffb"}, `{"s":"a\udcffb"}`},
		{"struct", map[string]any{"p": point{1, 2}}, `{"p":{"x":1,"y":2}}`},
		{"typed slice", map[string]any{"l": []string{"a", "b"}}, `{"l":["a","b"]}`},
		{"typed map", map[string]any{"m": map[string]int{"b": 1, "a": 2}}, `{"m":{"a":2,"b":1}}`},
		{"raw message", map[string]any{"r": json.RawMessage(`{"b": 1.50, "a": 1e2}`)}, `{"r":{"a":100,"b":1.5}}`},
		{"nil pointer", map[string]any{"p": (*point)(nil)}, `{"p":null}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(CanonicalArgs(tt.args))
			if got != tt.want {
				t.Fatalf("CanonicalArgs = %s, want %s", got, tt.want)
			}
			if !json.Valid([]byte(got)) {
				t.Fatalf("%s is not valid JSON", got)
			}
		})
	}
}

func TestCanonicalNumbers(t *testing.T) {
	// Every spelling of one number has one form.
	same := [][]string{
		{"1", "1.0", "1e0", "10e-1", "0.1e1", "1.000", "100e-2", "1E+0"},
		{"0", "-0", "0.0", "0e10", "-0.0e-5"},
		{"0.5", "5e-1", "0.50", "50E-2"},
		{"-12.25", "-1225e-2", "-0.1225e2"},
		{"123456789012345678901234567890", "1.23456789012345678901234567890e29"},
		{"1e+400", "10e399", "1E400"},
		{"1e-400", "0.1e-399"},
	}
	for _, group := range same {
		want, ok := canonicalNumber(group[0])
		if !ok {
			t.Fatalf("%s: not a number", group[0])
		}
		for _, s := range group[1:] {
			if got, _ := canonicalNumber(s); got != want {
				t.Errorf("canonicalNumber(%s) = %s, want %s (as %s)", s, got, want, group[0])
			}
		}
	}
	// Different numbers stay different, also where float64 rounds them
	// together.
	distinct := []string{"9007199254740993", "9007199254740992", "0.1", "0.10000000000000000001", "1e400", "1e401", "-1", "1"}
	seen := map[string]string{}
	for _, s := range distinct {
		c, _ := canonicalNumber(s)
		if prev, dup := seen[c]; dup {
			t.Errorf("%s and %s have the same form %s", s, prev, c)
		}
		seen[c] = s
	}
	for _, bad := range []string{"", "-", "01", "1.", ".5", "1e", "1e+", "+1", "0x10", "NaN", "1 "} {
		if _, ok := canonicalNumber(bad); ok {
			t.Errorf("canonicalNumber(%q) accepted", bad)
		}
	}
	// A huge exponent costs nothing.
	if got, _ := canonicalNumber("1e" + strings.Repeat("9", 10000)); !strings.HasPrefix(got, "1e+999") {
		t.Errorf("huge exponent: %.20s", got)
	}
}

func TestDigest(t *testing.T) {
	a := decodeNumbers(t, `{"path": "out.txt", "size": 1.0, "opts": {"b": true, "a": [1, 2e0]}}`)
	b := map[string]any{"opts": map[string]any{"a": []any{1.0, 2}, "b": true}, "size": 1, "path": "out.txt"}
	if Digest("write_file", a) != Digest("write_file", b) {
		t.Errorf("the same arguments decoded two ways have different digests:\n%s\n%s", CanonicalArgs(a), CanonicalArgs(b))
	}
	if Digest("write_file", a) == Digest("delete_file", a) {
		t.Error("the tool is not part of the digest")
	}
	c := decodeNumbers(t, `{"path": "out.txt", "size": 2, "opts": {"b": true, "a": [1, 2]}}`)
	if Digest("write_file", a) == Digest("write_file", c) {
		t.Error("changed arguments, same digest")
	}
	if d := Digest("t", nil); len(d) != 64 || strings.Trim(d, "0123456789abcdef") != "" {
		t.Errorf("digest %q is not sha256 hex", d)
	}
	// The separator keeps tool and arguments apart.
	if Digest("a", map[string]any{}) == Digest("a{}", nil) {
		t.Error("tool and arguments run together")
	}
}

// FuzzCanonicalArgs: the encoding is valid JSON, and encoding its own
// decoding gives it back (one form per value).
func FuzzCanonicalArgs(f *testing.F) {
	for _, s := range []string{
		`{"a": 1, "b": [1.0, 2e3, -0, "x"], "c": {"z": null, "y": true}}`,
		`{"n": 123456789012345678901234567890.5e-3}`, `{"s": "\u2028\ud800"}`, `{}`, `{"a":{"a":{"a":[[]]}}}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var args map[string]any
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		if d.Decode(&args) != nil {
			return
		}
		c := CanonicalArgs(args)
		if !json.Valid(c) {
			t.Fatalf("not JSON: %s", c)
		}
		var again map[string]any
		d = json.NewDecoder(bytes.NewReader(c))
		d.UseNumber()
		if err := d.Decode(&again); err != nil {
			t.Fatalf("decoding %s: %v", c, err)
		}
		if c2 := CanonicalArgs(again); !bytes.Equal(c, c2) {
			t.Fatalf("not a fixed point:\n%s\n%s", c, c2)
		}
		if Digest("t", args) != Digest("t", again) {
			t.Fatal("digest changed")
		}
	})
}
