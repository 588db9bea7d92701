package policy

import (
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The blocked_imports scan is a guard in front of the sandbox, not the
// boundary. It reads Python source without running it and finds the
// modules it imports and the dotted names it uses; the real check is the
// import hook in vial's Python driver (which reads VIAL_BLOCKED_IMPORTS,
// see Rules.BlockedImportsFor), and the sandbox contains whatever gets past
// both.
//
// What it finds:
//   - import x, import a.b as c, import x, y; from x import y, from x.y
//     import (z as w, v), from x import *;
//   - __import__("x"), importlib.import_module("x"), import_module("x"),
//     with the string written with escapes ("\x73ubprocess") or as adjacent
//     literals ("sub" "process"), and a name bound to the result
//     (o = __import__("os"); o.system) or an attribute of it
//     (__import__("os").system);
//   - dotted names: os.system, o.system after import os as o,
//     getattr(os, "system");
//   - the same inside f-string expressions and in string literals passed
//     to exec, eval and compile;
//   - identifiers in compatibility forms Python folds to ASCII (fullwidth
//     and mathematical letters: ｓｕｂｐｒｏｃｅｓｓ), for the common ranges.
//
// What it cannot find — anything computed at run time: module names built
// from expressions (__import__("sub" + "process"), decoding, reversing),
// names bound in an earlier cell (from os import system, then system(...)
// later), getattr with a computed name, sys.modules lookups, pickle or
// marshal payloads, ctypes, and code in files the program writes and runs.

// maxPythonDepth bounds how deep f-string expressions and exec/eval
// strings are scanned again as code.
const maxPythonDepth = 4

// PythonImports returns what Python code imports or uses, statically: each
// module it imports ("subprocess"), each name it imports from a module
// ("os.system", "os.*" for a star import), and each dotted name it
// references ("os.path.join"), resolved through import aliases. Sorted,
// without duplicates. It never fails: code that does not parse is scanned
// as far as it can be read.
func PythonImports(code string) []string {
	refs := scanPython(code, 0)
	slices.Sort(refs)
	return slices.Compact(refs)
}

// BlockedImport reports the first entry of blocked that the code uses
// (see PythonImports), and the reference that matched. An entry blocks
// itself and everything under it: "subprocess" blocks "subprocess.run",
// "os.system" blocks "from os import system", and a star import of a
// module blocks when any entry names something in it ("from os import *"
// with "os.system"). Importing a module does not use all of it: "import
// os" alone is not blocked by "os.system".
func BlockedImport(blocked []string, code string) (entry, ref string, found bool) {
	var refs []string
	for _, e := range blocked {
		e = strings.TrimSpace(e)
		if e == "" {
			continue
		}
		if refs == nil {
			refs = PythonImports(code)
		}
		for _, r := range refs {
			if importMatches(e, r) {
				return e, r, true
			}
		}
	}
	return "", "", false
}

func importMatches(entry, ref string) bool {
	if ref == entry || strings.HasPrefix(ref, entry+".") {
		return true
	}
	if mod, ok := strings.CutSuffix(ref, ".*"); ok {
		return strings.HasPrefix(entry, mod+".")
	}
	return false
}

// pyTok is a Python token: a name, a string literal (value decoded), an
// operator, or the end of a logical line.
type pyTok struct {
	kind byte // 'n' name, 's' string, 'o' operator, 'l' end of line
	text string
	// fstr marks an f-string: its expressions were scanned already.
	fstr bool
}

// scanPython returns the references in code (unsorted).
func scanPython(code string, depth int) []string {
	toks, nested := tokenizePython(code)
	var refs []string
	if depth < maxPythonDepth {
		for _, n := range nested {
			refs = append(refs, scanPython(n, depth+1)...)
		}
	}
	// Adjacent string literals are one string, as in Python.
	toks = joinStrings(toks)
	binds := map[string]string{}
	name := func(i int) string {
		if i >= 0 && i < len(toks) && toks[i].kind == 'n' {
			return toks[i].text
		}
		return ""
	}
	isOp := func(i int, o string) bool {
		return i >= 0 && i < len(toks) && toks[i].kind == 'o' && toks[i].text == o
	}
	str := func(i int) (string, bool) {
		if i >= 0 && i < len(toks) && toks[i].kind == 's' {
			return toks[i].text, true
		}
		return "", false
	}
	// dotted reads a.b.c at i; it returns the name and the index after.
	dotted := func(i int) (string, int) {
		n := name(i)
		if n == "" {
			return "", i
		}
		parts := []string{n}
		i++
		for isOp(i, ".") && name(i+1) != "" {
			parts = append(parts, name(i+1))
			i += 2
		}
		return strings.Join(parts, "."), i
	}
	for i := 0; i < len(toks); i++ {
		t := toks[i]
		switch {
		case t.kind == 'n' && t.text == "from":
			j := i + 1
			relative := false
			for isOp(j, ".") || isOp(j, "...") {
				relative = true
				j++
			}
			mod := ""
			if name(j) != "import" {
				mod, j = dotted(j)
			}
			if name(j) != "import" {
				continue // yield from, raise ... from
			}
			j++
			if isOp(j, "(") {
				j++
			}
			// from . import x is a package-relative import, which a
			// notebook cell has no package for: its names are read
			// past, not recorded.
			record := !relative && mod != ""
			if record {
				refs = append(refs, mod)
			}
			for {
				if isOp(j, "*") {
					if record {
						refs = append(refs, mod+".*")
					}
					break
				}
				n := name(j)
				if n == "" {
					break
				}
				full := mod + "." + n
				if record {
					refs = append(refs, full)
				}
				j++
				alias := n
				if name(j) == "as" && name(j+1) != "" {
					alias = name(j + 1)
					j += 2
				}
				binds[alias] = full
				if !isOp(j, ",") {
					break
				}
				j++
			}
			i = j - 1
		case t.kind == 'n' && t.text == "import":
			j := i + 1
			for {
				mod, k := dotted(j)
				if mod == "" {
					break
				}
				refs = append(refs, mod)
				if name(k) == "as" && name(k+1) != "" {
					binds[name(k+1)] = mod
					k += 2
				} else {
					top, _, _ := strings.Cut(mod, ".")
					binds[top] = top
				}
				j = k
				if !isOp(j, ",") {
					break
				}
				j++
			}
			i = j - 1
		case t.kind == 'n' && (t.text == "__import__" || t.text == "import_module") && isOp(i+1, "("):
			mod, ok := str(i + 2)
			if !ok {
				continue // a computed name: see the package documentation
			}
			mod = strings.TrimSpace(mod)
			refs = append(refs, mod)
			bound := mod
			if t.text == "__import__" {
				bound, _, _ = strings.Cut(mod, ".") // __import__ returns the top package
			}
			// x = __import__("os") binds x; importlib.import_module
			// is reached through its own name.
			start := i
			if isOp(i-1, ".") && name(i-2) != "" {
				start = i - 2
			}
			if isOp(start-1, "=") && name(start-2) != "" && !isOp(start-3, ".") {
				binds[name(start-2)] = bound
			}
			// __import__("os").system: only the one-argument form is
			// followed, so that the look-ahead stays constant.
			if isOp(i+3, ")") && isOp(i+4, ".") {
				if rest, _ := dotted(i + 5); rest != "" {
					refs = append(refs, bound+"."+rest)
				}
			}
		case t.kind == 'n' && t.text == "getattr" && isOp(i+1, "("):
			obj, j := dotted(i + 2)
			if obj == "" || !isOp(j, ",") {
				continue
			}
			if attr, ok := str(j + 1); ok {
				refs = append(refs, obj+"."+attr)
				if b, ok := resolve(binds, obj); ok {
					refs = append(refs, b+"."+attr)
				}
			}
		case t.kind == 'n' && (t.text == "exec" || t.text == "eval" || t.text == "compile") && isOp(i+1, "("):
			if s, ok := str(i + 2); ok && depth < maxPythonDepth {
				refs = append(refs, scanPython(s, depth+1)...)
			}
		case t.kind == 'n' && !isOp(i-1, "."):
			// A dotted name starts here: a.b.c, not the .c of x.c.
			d, j := dotted(i)
			if j == i+1 {
				continue
			}
			refs = append(refs, d)
			if b, ok := resolve(binds, d); ok && b != d {
				refs = append(refs, b)
			}
			// The names inside the chain are looked at too
			// (importlib.import_module("x")): they follow a ".",
			// so they start no chain of their own.
		}
	}
	return refs
}

// resolve rewrites the head of a dotted name through the import bindings:
// with import os as o, "o.system" is "os.system".
func resolve(binds map[string]string, d string) (string, bool) {
	head, rest, _ := strings.Cut(d, ".")
	b, ok := binds[head]
	if !ok {
		return "", false
	}
	if rest == "" {
		return b, true
	}
	return b + "." + rest, true
}

func joinStrings(toks []pyTok) []pyTok {
	out := toks[:0:0]
	for _, t := range toks {
		if t.kind == 's' && len(out) > 0 && out[len(out)-1].kind == 's' {
			out[len(out)-1].text += t.text
			continue
		}
		out = append(out, t)
	}
	return out
}

// tokenizePython splits code into tokens. nested returns the expressions
// of f-strings, to be scanned as code. Numbers are dropped; indentation is
// not tracked (no check here depends on it).
func tokenizePython(code string) (toks []pyTok, nested []string) {
	depth := 0 // brackets: a newline inside them does not end the line
	i := 0
	for i < len(code) {
		c := code[i]
		switch {
		case c == '#':
			for i < len(code) && code[i] != '\n' {
				i++
			}
		case c == '\\' && i+1 < len(code) && code[i+1] == '\n':
			i += 2
		case c == '\\' && i+2 < len(code) && code[i+1] == '\r' && code[i+2] == '\n':
			i += 3
		case c == '\n' || c == ';':
			if depth == 0 && (len(toks) == 0 || toks[len(toks)-1].kind != 'l') {
				toks = append(toks, pyTok{kind: 'l'})
			}
			i++
		case c == ' ' || c == '\t' || c == '\r' || c == '\f' || c == '\v':
			i++
		case c == '\'' || c == '"':
			val, n, exprs := pyString(code[i:], "")
			toks = append(toks, pyTok{kind: 's', text: val})
			nested = append(nested, exprs...)
			i += n
		case c >= '0' && c <= '9':
			for i < len(code) && (isNameByte(code[i]) || code[i] == '.') {
				i++
			}
		case isNameByte(c) || c >= utf8.RuneSelf:
			start := i
			for i < len(code) {
				r, n := utf8.DecodeRuneInString(code[i:])
				if !isIdentRune(r) {
					break
				}
				i += n
			}
			if i == start { // a non-letter rune: skip it
				_, n := utf8.DecodeRuneInString(code[i:])
				i += n
				break
			}
			word := code[start:i]
			if i < len(code) && (code[i] == '\'' || code[i] == '"') && isStringPrefix(word) {
				val, n, exprs := pyString(code[i:], strings.ToLower(word))
				toks = append(toks, pyTok{kind: 's', text: val, fstr: strings.ContainsAny(strings.ToLower(word), "ft")})
				nested = append(nested, exprs...)
				i += n
				break
			}
			toks = append(toks, pyTok{kind: 'n', text: foldIdent(word)})
		default:
			switch c {
			case '(', '[', '{':
				depth++
			case ')', ']', '}':
				if depth > 0 {
					depth--
				}
			}
			if c == '.' && strings.HasPrefix(code[i:], "...") {
				toks = append(toks, pyTok{kind: 'o', text: "..."})
				i += 3
				break
			}
			toks = append(toks, pyTok{kind: 'o', text: code[i : i+1]})
			i++
		}
	}
	return toks, nested
}

// isIdentRune reports whether r may be part of a Python identifier
// (approximately: letters, digits, marks and connector punctuation).
func isIdentRune(r rune) bool {
	if r < utf8.RuneSelf {
		return isNameByte(byte(r))
	}
	return r != utf8.RuneError && (unicode.IsLetter(r) || unicode.IsDigit(r) || unicode.In(r, unicode.Mn, unicode.Mc, unicode.Pc, unicode.Nl))
}

func isStringPrefix(w string) bool {
	switch strings.ToLower(w) {
	case "r", "u", "b", "f", "t", "br", "rb", "fr", "rf", "tr", "rt":
		return true
	}
	return false
}

// pyString reads a string literal at the start of s (at its opening
// quote). It returns the value (escapes decoded unless raw), the bytes
// consumed, and for an f-string the text of each replacement field.
func pyString(s, prefix string) (val string, n int, exprs []string) {
	raw := strings.Contains(prefix, "r")
	fmtStr := strings.ContainsAny(prefix, "ft")
	q := s[:1]
	if strings.HasPrefix(s, q+q+q) {
		q = q + q + q
	}
	i := len(q)
	var b strings.Builder
	for i < len(s) {
		if strings.HasPrefix(s[i:], q) {
			return b.String(), i + len(q), exprs
		}
		c := s[i]
		if len(q) == 1 && c == '\n' {
			// An unterminated single-quoted string ends at the line.
			return b.String(), i, exprs
		}
		if fmtStr && c == '{' {
			if i+1 < len(s) && s[i+1] == '{' {
				b.WriteByte('{')
				i += 2
				continue
			}
			e, n := fieldExpr(s[i+1:])
			exprs = append(exprs, e)
			i += 1 + n
			continue
		}
		if c == '\\' && i+1 < len(s) {
			if raw {
				b.WriteString(s[i : i+2])
				i += 2
				continue
			}
			v, n := pyEscape(s[i:])
			b.WriteString(v)
			i += n
			continue
		}
		b.WriteByte(c)
		i++
	}
	return b.String(), i, exprs
}

// fieldExpr reads an f-string replacement field after its "{", up to the
// matching "}", skipping nested brackets and strings (Python 3.12 allows
// the same quote inside). It returns the field's text and the bytes
// consumed.
func fieldExpr(s string) (string, int) {
	depth := 0
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '\'' || c == '"':
			_, n, _ := pyString(s[i:], "")
			i += n
			continue
		case c == '(' || c == '[' || c == '{':
			depth++
		case c == ')' || c == ']':
			depth--
		case c == '}':
			if depth == 0 {
				return s[:i], i + 1
			}
			depth--
		}
		i++
	}
	return s, len(s)
}

// pyEscape decodes one backslash escape at the start of s.
func pyEscape(s string) (string, int) {
	e := s[1]
	switch e {
	case '\n':
		return "", 2
	case 'a':
		return "\a", 2
	case 'b':
		return "\b", 2
	case 'f':
		return "\f", 2
	case 'n':
		return "\n", 2
	case 'r':
		return "\r", 2
	case 't':
		return "\t", 2
	case 'v':
		return "\v", 2
	case '\\', '\'', '"':
		return s[1:2], 2
	case 'x', 'u', 'U':
		want := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
		if len(s) < 2+want {
			return s[:2], 2
		}
		v, err := strconv.ParseUint(s[2:2+want], 16, 32)
		if err != nil || v > utf8.MaxRune {
			return s[:2], 2
		}
		return string(rune(v)), 2 + want
	case 'N':
		// \N{NAME}: no name table here; keep it as written.
		if end := strings.IndexByte(s, '}'); end > 0 {
			return s[:end+1], end + 1
		}
		return s[:2], 2
	}
	if e >= '0' && e <= '7' {
		n := 1
		for n < 3 && 1+n < len(s) && s[1+n] >= '0' && s[1+n] <= '7' {
			n++
		}
		v, _ := strconv.ParseUint(s[1:1+n], 8, 32)
		return string(rune(v)), 1 + n
	}
	return s[:2], 2
}

// foldIdent applies the part of NFKC normalisation that maps letters and
// digits onto ASCII, as Python does to identifiers: "ｏｓ" and "𝐨𝐬" are
// os to Python. The stdlib has no NFKC tables; the common ranges are done
// here, and the driver's import hook sees the real name anyway.
func foldIdent(w string) string {
	ascii := true
	for i := 0; i < len(w); i++ {
		if w[i] >= utf8.RuneSelf {
			ascii = false
			break
		}
	}
	if ascii {
		return w
	}
	var b strings.Builder
	for _, r := range w {
		switch {
		case r >= 0xFF10 && r <= 0xFF19: // fullwidth digits
			b.WriteRune('0' + r - 0xFF10)
		case r >= 0xFF21 && r <= 0xFF3A: // fullwidth capitals
			b.WriteRune('A' + r - 0xFF21)
		case r >= 0xFF41 && r <= 0xFF5A: // fullwidth small letters
			b.WriteRune('a' + r - 0xFF41)
		case r == 0xFF3F: // fullwidth low line
			b.WriteByte('_')
		case r >= 0x1D400 && r <= 0x1D6A3: // mathematical alphanumeric letters
			k := (r - 0x1D400) % 52
			if k < 26 {
				b.WriteRune('A' + k)
			} else {
				b.WriteRune('a' + k - 26)
			}
		case r >= 0x1D7CE && r <= 0x1D7FF: // mathematical digits
			b.WriteRune('0' + (r-0x1D7CE)%10)
		case r == 0x017F: // long s
			b.WriteByte('s')
		case r == 0x212A: // Kelvin sign
			b.WriteByte('K')
		case r == 0xFB01:
			b.WriteString("fi")
		case r == 0xFB02:
			b.WriteString("fl")
		case r == 0xFB00:
			b.WriteString("ff")
		case r == 0xFB03:
			b.WriteString("ffi")
		case r == 0xFB04:
			b.WriteString("ffl")
		case r == 0xFB05, r == 0xFB06:
			b.WriteString("st")
		default:
			if a, ok := letterlike[r]; ok {
				b.WriteByte(a)
			} else {
				b.WriteRune(r)
			}
		}
	}
	return b.String()
}

// letterlike maps the letterlike symbols that stand in for the holes of
// the mathematical alphabets (and a few others) to their NFKC letter.
var letterlike = map[rune]byte{
	0x210A: 'g', 0x210B: 'H', 0x210C: 'H', 0x210D: 'H', 0x210E: 'h',
	0x2110: 'I', 0x2111: 'I', 0x2112: 'L', 0x2113: 'l', 0x2115: 'N',
	0x2119: 'P', 0x211A: 'Q', 0x211B: 'R', 0x211C: 'R', 0x211D: 'R',
	0x2124: 'Z', 0x2128: 'Z', 0x212C: 'B', 0x212D: 'C', 0x212F: 'e',
	0x2130: 'E', 0x2131: 'F', 0x2133: 'M', 0x2134: 'o', 0x2139: 'i',
	0x2102: 'C', 0x2145: 'D', 0x2146: 'd', 0x2147: 'e', 0x2148: 'i',
	0x2149: 'j',
}
