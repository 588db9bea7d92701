package policy

import (
	"path"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The blocked_commands matcher is a guard in front of the sandbox, not the
// boundary. It reads a shell command the way a shell splits it into words
// and stops the obvious spellings of a blocked command; the sandbox (no
// capabilities, a read-only root, an empty network, cgroup limits) is what
// actually contains a command that gets past it.
//
// What it catches, for the pattern "chmod 777":
//   - extra whitespace and any quoting: chmod  "777" f, chmod '7''77' f,
//     c\hmod 777, $'chmod' 777, $'\x63hmod' 777, "ch"mod 777;
//   - the command anywhere: after ;, &&, ||, |, &, a newline, inside
//     $( ), backticks, ( ) and { }, after sudo/env/xargs/nohup;
//   - a path to the program: /bin/chmod 777, and a path glob with a
//     literal letter in its name: /???/ch?od 777;
//   - options between the words: chmod -R 777, rm -rf -- /;
//   - quoted command strings run by another shell: sh -c 'chmod 777 f',
//     bash -c "chmod \"777\" f", eval "chmod 777 f" (nested up to
//     maxCommandDepth levels);
//   - $IFS as a word separator: chmod${IFS}777, and simple brace
//     expansion: {chmod,777,f}.
//
// What it cannot catch — anything the shell computes before it runs:
// variables and indirection (c=chmod; $c 777 f), command output
// (eval $(echo Y2htb2QgNzc3IGY= | base64 -d), $(printf '\x63hmod') 777),
// encodings (base64, hex, rev), aliases and functions, scripts written to
// a file and run later, other interpreters (python3 -c 'os.chmod(...)'),
// equivalent commands (chmod a+rwx, chmod 0777, rm -r -f /,
// find / -delete), globs that do not keep a letter of the name, and a
// wrapper between an operator and the command (curl x | sudo bash does not
// match "curl * | bash").

// maxCommandDepth bounds how deep quoted strings are read again as
// commands (sh -c "bash -c '...'"). Each level reads at most the text of
// the one above, so the work is at most maxCommandDepth times the
// command's length.
const maxCommandDepth = 4

// MatchCommand reports whether the shell command contains the
// blocked_commands pattern.
//
// Both are split into words as a shell does (quotes and backslashes
// removed) and into operators (; & && || | ( ) < > ...; a newline is ;).
// The pattern matches where its words and operators appear in the command
// in order, starting at any word, with these rules:
//   - the first word of the pattern, and a word after an operator, also
//     match a path ending in them ("chmod" matches "/usr/bin/chmod");
//   - the last word of the pattern matches any word it begins, so
//     "dd if=" matches "dd if=/dev/zero" and "mkfs" matches "mkfs.ext4" —
//     and "rm -rf /" matches "rm -rf /tmp/x" too: seed 000's check is a
//     substring test, and a guard errs towards refusing;
//   - options (words starting with "-") may come between two words of the
//     pattern: "chmod 777" matches "chmod -R 777";
//   - a "*" word in the pattern matches any words within one pipeline
//     ("curl * | bash"), and "*" inside a word matches any characters.
//
// An empty pattern matches nothing. It is a guard: see the package
// documentation for what it cannot catch.
func MatchCommand(pattern, command string) bool {
	p := compileCommand(pattern)
	if len(p) == 0 {
		return false
	}
	for _, s := range commandStreams(command) {
		if p.match(s) {
			return true
		}
	}
	return false
}

// BlockedCommand returns the first of patterns the command matches (see
// MatchCommand). The command is read once for all patterns.
func BlockedCommand(patterns []string, command string) (pattern string, blocked bool) {
	var streams [][]token
	for _, pat := range patterns {
		p := compileCommand(pat)
		if len(p) == 0 {
			continue
		}
		if streams == nil {
			streams = commandStreams(command)
		}
		for _, s := range streams {
			if p.match(s) {
				return pat, true
			}
		}
	}
	return "", false
}

// NormalizeCommand returns the command as the matcher reads it: its words
// and operators separated by single spaces, a word that holds spaces or
// operators in single quotes. Useful to show what a pattern is tested
// against.
func NormalizeCommand(command string) string {
	toks := tokenizeShell(command)
	var b strings.Builder
	for i, t := range toks {
		if i > 0 {
			b.WriteByte(' ')
		}
		if !t.op && (t.text == "" || strings.ContainsAny(t.text, " \t\n;&|()<>'\"\\$`")) {
			b.WriteString(strconv.Quote(t.text))
			continue
		}
		b.WriteString(t.text)
	}
	return b.String()
}

// token is a word (quotes removed) or an operator.
type token struct {
	text string
	op   bool
	// glob: the word has an unquoted *, ? or [.
	glob bool
	// nested: the word holds characters that make it worth reading again
	// as a command (spaces, operators, quotes, $, backquotes).
	nested bool
}

// separator operators end a pipeline: a "*" in a pattern does not reach
// past them.
func (t token) separator() bool {
	if !t.op {
		return false
	}
	switch t.text {
	case ";", "&", "&&", "||", ";;", "(", ")", "`":
		return true
	}
	return false
}

// commandStreams tokenizes a command, and again every word that may be a
// command in its own right, to maxCommandDepth.
func commandStreams(command string) [][]token {
	var out [][]token
	level := []string{command}
	for depth := 0; depth <= maxCommandDepth && len(level) > 0; depth++ {
		var nextLevel []string
		for _, s := range level {
			toks := tokenizeShell(s)
			out = append(out, toks)
			for _, t := range toks {
				// A word read again must be a different text, or
				// it would only repeat itself ($HOME/x).
				if t.nested && t.text != s {
					nextLevel = append(nextLevel, t.text)
				}
			}
		}
		level = nextLevel
	}
	return out
}

// tokenizeShell splits s into words and operators, removing quotes as a
// shell does. It never fails: an unterminated quote runs to the end (a
// shell would refuse such a command, so reading more of it is harmless).
// Comments are not removed: text after # is matched too, which can only
// refuse more.
func tokenizeShell(s string) []token {
	var (
		out     []token
		word    strings.Builder
		inWord  bool
		quoted  bool // some part of the word was quoted
		glob    bool
		nested  bool
		rawWord strings.Builder // the word as written, for brace expansion
	)
	flush := func() {
		if !inWord {
			return
		}
		w := word.String()
		if !quoted && !glob {
			if parts, ok := braceExpand(rawWord.String()); ok {
				for _, p := range parts {
					out = append(out, token{text: p})
				}
				word.Reset()
				rawWord.Reset()
				inWord, quoted, glob, nested = false, false, false, false
				return
			}
		}
		if !nested && strings.ContainsAny(w, " \t\n;&|()<>'\"\\$`") {
			nested = true
		}
		out = append(out, token{text: w, glob: glob, nested: nested})
		word.Reset()
		rawWord.Reset()
		inWord, quoted, glob, nested = false, false, false, false
	}
	op := func(text string) {
		flush()
		out = append(out, token{text: text, op: true})
	}
	lit := func(str string) {
		inWord = true
		word.WriteString(str)
	}
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\v' || c == '\f':
			flush()
			i++
		case c == '\n':
			op(";")
			i++
		case c == '\\':
			if i+1 >= len(s) {
				lit("\\")
				i++
				break
			}
			if s[i+1] == '\n' {
				i += 2 // line continuation
				break
			}
			_, n := utf8.DecodeRuneInString(s[i+1:])
			quoted = true
			lit(s[i+1 : i+1+n])
			rawWord.WriteString(s[i : i+1+n])
			i += 1 + n
		case c == '\'':
			end := strings.IndexByte(s[i+1:], '\'')
			if end < 0 {
				end = len(s) - i - 1
			}
			quoted = true
			lit(s[i+1 : i+1+end])
			i += end + 2
		case c == '"':
			body, n := doubleQuoted(s[i+1:])
			quoted = true
			if strings.ContainsAny(body, "$`") {
				nested = true // "$(chmod 777 f)" runs a command
			}
			lit(body)
			i += 1 + n
		case c == '$' && i+1 < len(s) && s[i+1] == '\'':
			body, n := ansiC(s[i+2:])
			quoted = true
			lit(body)
			i += 2 + n
		case c == '$' && i+1 < len(s) && s[i+1] == '"':
			body, n := doubleQuoted(s[i+2:])
			quoted = true
			lit(body)
			i += 2 + n
		case c == '$' && i+1 < len(s) && s[i+1] == '(':
			op("(")
			i += 2
		case c == '$' && strings.HasPrefix(s[i:], "${IFS}"):
			flush()
			i += len("${IFS}")
		case c == '$' && strings.HasPrefix(s[i:], "$IFS") && !isNameByte(at(s, i+4)):
			flush()
			i += len("$IFS")
		case c == '`':
			op("`")
			i++
		case c == ';' || c == '&' || c == '|' || c == '(' || c == ')' || c == '<' || c == '>':
			o := shellOperator(s[i:])
			op(o)
			i += len(o)
		default:
			if c == '*' || c == '?' || c == '[' {
				glob = true
			}
			lit(s[i : i+1])
			rawWord.WriteByte(c)
			i++
		}
	}
	flush()
	return out
}

func at(s string, i int) byte {
	if i < len(s) {
		return s[i]
	}
	return 0
}

func isNameByte(b byte) bool {
	return b == '_' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}

// shellOperator returns the longest operator at the start of s.
func shellOperator(s string) string {
	for _, o := range []string{"&>>", ";;&", "<<<", "<<-", "&&", "||", ";;", ";&", "|&", "<<", ">>", "<&", ">&", "<>", ">|", "&>"} {
		if strings.HasPrefix(s, o) {
			return o
		}
	}
	return s[:1]
}

// doubleQuoted reads the body of a "..." string (s starts after the
// opening quote); it returns the body with the shell's backslash escapes
// applied and the bytes consumed, closing quote included.
func doubleQuoted(s string) (string, int) {
	var b strings.Builder
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == '"':
			return b.String(), i + 1
		case c == '\\' && i+1 < len(s):
			switch s[i+1] {
			case '$', '`', '"', '\\':
				b.WriteByte(s[i+1])
				i += 2
				continue
			case '\n':
				i += 2
				continue
			}
			b.WriteByte(c)
			i++
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String(), i
}

// ansiC reads the body of a $'...' string (s starts after the quote),
// decoding its escapes as bash does.
func ansiC(s string) (string, int) {
	var b strings.Builder
	i := 0
	for i < len(s) {
		c := s[i]
		if c == '\'' {
			return b.String(), i + 1
		}
		if c != '\\' || i+1 >= len(s) {
			b.WriteByte(c)
			i++
			continue
		}
		e := s[i+1]
		i += 2
		switch e {
		case 'a':
			b.WriteByte('\a')
		case 'b':
			b.WriteByte('\b')
		case 'e', 'E':
			b.WriteByte(0x1b)
		case 'f':
			b.WriteByte('\f')
		case 'n':
			b.WriteByte('\n')
		case 'r':
			b.WriteByte('\r')
		case 't':
			b.WriteByte('\t')
		case 'v':
			b.WriteByte('\v')
		case '\\', '\'', '"', '?':
			b.WriteByte(e)
		case 'c':
			if i < len(s) {
				b.WriteByte(s[i] & 0x1f)
				i++
			}
		case 'x', 'u', 'U':
			max := map[byte]int{'x': 2, 'u': 4, 'U': 8}[e]
			n := 0
			for n < max && i+n < len(s) && isHex(s[i+n]) {
				n++
			}
			if n == 0 {
				b.WriteByte('\\')
				b.WriteByte(e)
				break
			}
			v, _ := strconv.ParseUint(s[i:i+n], 16, 32)
			i += n
			if e == 'x' {
				b.WriteByte(byte(v))
			} else if v <= utf8.MaxRune {
				b.WriteRune(rune(v))
			}
		default:
			if e >= '0' && e <= '7' {
				n := 1
				for n < 3 && i+n-1 < len(s) && s[i+n-1] >= '0' && s[i+n-1] <= '7' {
					n++
				}
				v, _ := strconv.ParseUint(s[i-1:i-1+n], 8, 16)
				b.WriteByte(byte(v))
				i += n - 1
				break
			}
			b.WriteByte('\\')
			b.WriteByte(e)
		}
	}
	return b.String(), i
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// braceExpand expands a whole unquoted word of the form {a,b,c} (no
// nesting) into its parts, as bash does before running it.
func braceExpand(raw string) ([]string, bool) {
	if len(raw) < 3 || raw[0] != '{' || raw[len(raw)-1] != '}' {
		return nil, false
	}
	body := raw[1 : len(raw)-1]
	if !strings.Contains(body, ",") || strings.ContainsAny(body, "{}") {
		return nil, false
	}
	return strings.Split(body, ","), true
}

// commandPattern is a compiled blocked_commands entry.
type commandPattern []cpElem

type cpKind int

const (
	cpWord cpKind = iota
	cpOp
	cpAny // a "*" word: any tokens within one pipeline
)

type cpElem struct {
	kind cpKind
	text string
}

func compileCommand(pattern string) commandPattern {
	var p commandPattern
	// Surrounding white space is no part of a pattern: a trailing
	// newline must not turn into a ";" the command has to contain.
	for _, t := range tokenizeShell(strings.TrimSpace(pattern)) {
		switch {
		case t.op:
			p = append(p, cpElem{cpOp, t.text})
		case t.text == "*":
			p = append(p, cpElem{kind: cpAny})
		case t.text == "":
			// An empty quoted word ("") in a pattern matches nothing
			// useful; drop it rather than refuse every empty argument.
		default:
			p = append(p, cpElem{cpWord, t.text})
		}
	}
	// A pattern of wildcards only would refuse every command; keep it
	// (an operator may mean it), but a pattern with no element is empty.
	return p
}

// match runs the pattern over one token stream, keeping the set of
// positions reachable after each element: O(len(p) × len(toks)) word
// comparisons, with no backtracking to exploit.
func (p commandPattern) match(toks []token) bool {
	n := len(toks)
	cur := make([]bool, n+1)
	for i := range n {
		cur[i] = true // the pattern may start at any token
	}
	if p[0].kind == cpAny {
		cur[n] = true
	}
	for k, e := range p {
		next := make([]bool, n+1)
		any := false
		switch e.kind {
		case cpAny:
			on := false
			for j := 0; j <= n; j++ {
				if cur[j] {
					on = true
				}
				if on {
					next[j] = true
					any = true
				}
				if j < n && toks[j].separator() {
					on = false
				}
			}
		case cpOp:
			for j := range n {
				if cur[j] && toks[j].op && toks[j].text == e.text {
					next[j+1] = true
					any = true
				}
			}
		case cpWord:
			// A word in command position (first, or after an
			// operator) may be written as a path to the program.
			first, last := k == 0 || p[k-1].kind == cpOp, k == len(p)-1
			for j := range n {
				if cur[j] && !toks[j].op && wordMatches(e.text, toks[j], first, last) {
					next[j+1] = true
					any = true
				}
			}
			// Options between this word and the next pattern word.
			if !last && p[k+1].kind == cpWord {
				for j := range n {
					if next[j] && isOption(toks[j]) {
						next[j+1] = true
					}
				}
			}
		}
		if !any {
			return false
		}
		cur = next
	}
	for _, ok := range cur {
		if ok {
			return true
		}
	}
	return false
}

func isOption(t token) bool { return !t.op && len(t.text) > 1 && t.text[0] == '-' }

// wordMatches compares a pattern word with a command word.
func wordMatches(pat string, t token, first, last bool) bool {
	if last {
		pat += "*"
	}
	if wildMatch(pat, t.text) {
		return true
	}
	if !first {
		return false
	}
	// The program may be named by a path: /usr/bin/chmod.
	for i := 0; i < len(t.text); i++ {
		if t.text[i] == '/' && wildMatch(pat, t.text[i+1:]) {
			return true
		}
	}
	// A path glob the shell expands to the program: /???/ch?od. Only a
	// name that keeps a literal letter counts: "/bin/*" would otherwise
	// match every pattern.
	if t.glob && strings.Contains(t.text, "/") && !strings.Contains(pat[:len(pat)-boolInt(last)], "*") {
		base := path.Base(t.text)
		name := strings.TrimSuffix(pat, "*")
		if hasLiteral(base) {
			if m, err := path.Match(base, name); err == nil && m {
				return true
			}
		}
	}
	return false
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func hasLiteral(glob string) bool {
	inClass := false
	for i := 0; i < len(glob); i++ {
		switch c := glob[i]; {
		case c == '[':
			inClass = true
		case c == ']':
			inClass = false
		case !inClass && c != '*' && c != '?' && c != '\\':
			return true
		}
	}
	return false
}

// wildMatch matches s against a pattern where only "*" is special (any
// run of characters). Linear in practice: it backtracks only to the last
// star.
func wildMatch(pat, s string) bool {
	pi, si := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(pat) && pat[pi] == '*':
			star, mark = pi, si
			pi++
		case pi < len(pat) && pat[pi] == s[si]:
			pi++
			si++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(pat) && pat[pi] == '*' {
		pi++
	}
	return pi == len(pat)
}
