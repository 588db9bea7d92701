package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"math"
	"math/big"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// CanonicalArgs encodes tool arguments as deterministic JSON: object keys
// sorted (by bytes), no insignificant space, every number in one form
// whatever its Go type or JSON spelling (1, 1.0, 1e0, int64(1) and
// json.Number("1") are all 1; 0.5 is 0.5, 1e21 is 1e+21, as JavaScript
// prints numbers). Two argument sets have the same encoding only if they
// are the same JSON value, so an approval bound to the encoding (Digest)
// covers exactly the arguments shown to the human:
//   - numbers are compared as exact decimals (no float rounding: two
//     large integers never collapse into one);
//   - strings keep every byte: invalid UTF-8 is written as \udcXX escapes
//     (as Python's surrogateescape), which valid text cannot produce,
//     instead of the U+FFFD that would make two strings equal;
//   - NaN and ±Inf, which JSON cannot hold, are written as the strings
//     "NaN", "+Inf" and "-Inf" (arguments decoded from JSON never hold
//     them).
//
// Values of other types (structs, typed slices and maps) are encoded
// through encoding/json first. A nil map is {}.
func CanonicalArgs(args map[string]any) []byte {
	var b strings.Builder
	if args == nil {
		args = map[string]any{}
	}
	writeCanonical(&b, args)
	return []byte(b.String())
}

// Digest returns the hex SHA-256 of the tool name, a NUL byte, and
// CanonicalArgs(args): what an approval token is bound to.
func Digest(tool string, args map[string]any) string {
	h := sha256.New()
	h.Write([]byte(tool))
	h.Write([]byte{0})
	h.Write(CanonicalArgs(args))
	return hex.EncodeToString(h.Sum(nil))
}

func writeCanonical(b *strings.Builder, v any) {
	switch x := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(x))
	case string:
		writeString(b, x)
	case json.Number:
		if n, ok := canonicalNumber(string(x)); ok {
			b.WriteString(n)
		} else {
			writeString(b, string(x))
		}
	case float64:
		writeFloat(b, x, 64)
	case float32:
		writeFloat(b, float64(x), 32)
	case int:
		writeInt(b, strconv.FormatInt(int64(x), 10))
	case int8:
		writeInt(b, strconv.FormatInt(int64(x), 10))
	case int16:
		writeInt(b, strconv.FormatInt(int64(x), 10))
	case int32:
		writeInt(b, strconv.FormatInt(int64(x), 10))
	case int64:
		writeInt(b, strconv.FormatInt(x, 10))
	case uint:
		writeInt(b, strconv.FormatUint(uint64(x), 10))
	case uint8:
		writeInt(b, strconv.FormatUint(uint64(x), 10))
	case uint16:
		writeInt(b, strconv.FormatUint(uint64(x), 10))
	case uint32:
		writeInt(b, strconv.FormatUint(uint64(x), 10))
	case uint64:
		writeInt(b, strconv.FormatUint(x, 10))
	case *big.Int:
		writeInt(b, x.String())
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			writeCanonical(b, e)
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, k)
			b.WriteByte(':')
			writeCanonical(b, x[k])
		}
		b.WriteByte('}')
	case json.RawMessage:
		writeViaJSON(b, x)
	default:
		rv := reflect.ValueOf(v)
		if (rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface) && rv.IsNil() {
			b.WriteString("null")
			return
		}
		raw, err := json.Marshal(v)
		if err != nil {
			// Not encodable: the type and the error stand in, which
			// no argument decoded from JSON can equal.
			writeString(b, "\xff"+reflect.TypeOf(v).String()+": "+err.Error())
			return
		}
		writeViaJSON(b, raw)
	}
}

// writeViaJSON decodes JSON (numbers kept exact) and encodes the result.
func writeViaJSON(b *strings.Builder, raw []byte) {
	d := json.NewDecoder(strings.NewReader(string(raw)))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		writeString(b, "\xffinvalid JSON: "+err.Error())
		return
	}
	writeCanonical(b, v)
}

func writeInt(b *strings.Builder, s string) {
	n, _ := canonicalNumber(s)
	b.WriteString(n)
}

func writeFloat(b *strings.Builder, f float64, bits int) {
	switch {
	case math.IsNaN(f):
		writeString(b, "NaN")
	case math.IsInf(f, 1):
		writeString(b, "+Inf")
	case math.IsInf(f, -1):
		writeString(b, "-Inf")
	default:
		// The shortest decimal that reads back as f: what a JSON
		// decoder produced it from, in the usual case.
		n, _ := canonicalNumber(strconv.FormatFloat(f, 'g', -1, bits))
		b.WriteString(n)
	}
}

// canonicalNumber rewrites a JSON number exactly, in the form JavaScript's
// Number.prototype.toString gives its digits: plain digits from 1e-6 up to
// 1e21, exponent notation outside. It works on the decimal digits, never
// on a float, and in time linear in the length of s however large its
// exponent.
func canonicalNumber(s string) (string, bool) {
	if !validJSONNumber(s) {
		return "", false
	}
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	mant, exp, _ := strings.Cut(strings.ToLower(s), "e")
	intPart, frac, _ := strings.Cut(mant, ".")
	digits := strings.TrimLeft(intPart+frac, "0")
	// value = 0.digits... × 10^point, with point counted from intPart.
	point := new(big.Int).SetInt64(int64(len(intPart) - (len(intPart+frac) - len(digits))))
	digits = strings.TrimRight(digits, "0")
	if digits == "" {
		return "0", true // -0 is 0
	}
	if exp != "" {
		e, ok := new(big.Int).SetString(strings.TrimPrefix(exp, "+"), 10)
		if !ok {
			return "", false
		}
		point.Add(point, e)
	}
	var out strings.Builder
	if neg {
		out.WriteByte('-')
	}
	k := len(digits)
	// n is the position of the decimal point relative to the digits
	// (ECMAScript's n): value = digits × 10^(n-k).
	if point.IsInt64() {
		n := point.Int64()
		switch {
		case int64(k) <= n && n <= 21:
			out.WriteString(digits)
			out.WriteString(strings.Repeat("0", int(n)-k))
			return out.String(), true
		case 0 < n && n <= 21:
			out.WriteString(digits[:n])
			out.WriteByte('.')
			out.WriteString(digits[n:])
			return out.String(), true
		case -6 < n && n <= 0:
			out.WriteString("0.")
			out.WriteString(strings.Repeat("0", int(-n)))
			out.WriteString(digits)
			return out.String(), true
		}
	}
	out.WriteByte(digits[0])
	if k > 1 {
		out.WriteByte('.')
		out.WriteString(digits[1:])
	}
	out.WriteByte('e')
	e := new(big.Int).Sub(point, big.NewInt(1))
	if e.Sign() >= 0 {
		out.WriteByte('+')
	}
	out.WriteString(e.String())
	return out.String(), true
}

// validJSONNumber checks the JSON number grammar.
func validJSONNumber(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	switch {
	case i < len(s) && s[i] == '0':
		i++
	case i < len(s) && s[i] >= '1' && s[i] <= '9':
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
	default:
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		if i == start {
			return false
		}
	}
	return i == len(s)
}

// writeString writes s as a JSON string: the escapes encoding/json uses
// for control characters, quotes and backslashes, and \udcXX for each byte
// of invalid UTF-8.
func writeString(b *strings.Builder, s string) {
	const hexd = "0123456789abcdef"
	b.WriteByte('"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case c == '\n':
				b.WriteString(`\n`)
			case c == '\r':
				b.WriteString(`\r`)
			case c == '\t':
				b.WriteString(`\t`)
			case c < 0x20 || c == 0x7f:
				b.WriteString(`\u00`)
				b.WriteByte(hexd[c>>4])
				b.WriteByte(hexd[c&0xf])
			default:
				b.WriteByte(c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b.WriteString(`\udc`)
			b.WriteByte(hexd[c>>4])
			b.WriteByte(hexd[c&0xf])
			i++
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			b.WriteString(`\u202`)
			b.WriteByte(hexd[r&0xf])
		} else {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	b.WriteByte('"')
}
