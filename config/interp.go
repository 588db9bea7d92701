package config

import (
	"bufio"
	"bytes"
	"fmt"
	"strings"

	"github.com/vial-run/vial/internal/lazyre"
	"github.com/vial-run/vial/internal/tomltext"
)

// Interpolation: ${VAR}, ${VAR:default} and the escape $${, in string
// values only, after the layers are merged (so a value a higher layer
// replaced is never expanded). Variables are looked up, first match wins:
//
//  1. vial's built-in variables (WORKSPACE, AGENT_ID, CONFIG_DIR, ...):
//     they describe vial itself, so the environment cannot redirect them;
//  2. the agent's .env file: the agent's own, more specific than the host;
//  3. the process environment.
//
// A variable set to the empty string is set: ${VAR:default} gives "" (as
// the seed's os.environ.get("VAR", "default") does).

var envName = lazyre.New(`^[A-Za-z_][A-Za-z0-9_]*$`)

// secretName matches variable names whose values are masked wherever they
// are shown, whichever source they came from.
var secretName = lazyre.New(`(?i)(KEY|TOKEN|SECRET|PASSWORD|PASSWD|CREDENTIAL|AUTH)`)

// vars is what ${...} can refer to.
type vars struct {
	builtin map[string]string
	dotenv  map[string]string
	envFile string // the .env file's name, for messages
	env     func(string) (string, bool)
}

// lookup returns the value of name and whether it must be masked.
func (v *vars) lookup(name string) (val string, ok, secret bool) {
	if val, ok := v.builtin[name]; ok {
		return val, true, false
	}
	if val, ok := v.dotenv[name]; ok {
		return val, true, true
	}
	if v.env != nil {
		if val, ok := v.env(name); ok {
			return val, true, secretName.MatchString(name)
		}
	}
	return "", false, false
}

// expand interpolates s. It reports whether anything was expanded and
// whether the result holds a secret.
func (v *vars) expand(s string) (out string, expanded, secret bool, err error) {
	if !strings.Contains(s, "${") {
		return s, false, false, nil
	}
	var b strings.Builder
	for {
		i := strings.Index(s, "${")
		if i < 0 {
			b.WriteString(s)
			break
		}
		if i > 0 && s[i-1] == '$' {
			// $${ is a literal ${.
			b.WriteString(s[:i-1])
			b.WriteString("${")
			s = s[i+2:]
			expanded = true
			continue
		}
		b.WriteString(s[:i])
		end := strings.IndexByte(s[i:], '}')
		if end < 0 {
			return "", false, false, fmt.Errorf("unterminated ${ in %q (write $${ for a literal ${)", s[i:])
		}
		ref := s[i+2 : i+end]
		name, def, hasDef := strings.Cut(ref, ":")
		if !envName.MatchString(name) {
			return "", false, false, fmt.Errorf("${%s}: %q is not a variable name (valid: letters, digits and _, not starting with a digit)", ref, name)
		}
		val, ok, sec := v.lookup(name)
		switch {
		case ok:
			secret = secret || sec
		case hasDef:
			val = def
			secret = secret || secretName.MatchString(name)
		default:
			where := "the environment"
			if v.envFile != "" {
				where += " or " + v.envFile
			}
			return "", false, false, fmt.Errorf("${%s} is not set (set it in %s, or write ${%s:default})", name, where, name)
		}
		b.WriteString(val)
		expanded = true
		s = s[i+end+1:]
	}
	return b.String(), expanded, secret, nil
}

// interpolate expands every string in the tree, recording errors with the
// key they belong to.
func (v *vars) interpolate(n *node, path string, errs *errList) {
	switch n.kind {
	case kTable:
		for _, k := range n.sortedKeys() {
			v.interpolate(n.tbl[k], joinPath(path, k), errs)
		}
	case kArray:
		for i, e := range n.arr {
			v.interpolate(e, fmt.Sprintf("%s[%d]", path, i), errs)
		}
	case kString:
		out, expanded, secret, err := v.expand(n.s)
		if err != nil {
			errs.add(n.valPos(), "%s: %v", path, err)
			return
		}
		if expanded {
			n.s, n.interp = out, true
			n.secret = n.secret || secret
		}
	}
}

func joinPath(path, k string) string {
	if !tomltext.BareKey.MatchString(k) {
		k = tomltext.String(k)
	}
	if path == "" {
		return k
	}
	return path + "." + k
}

// parseDotEnv reads an agent's .env file: KEY=VALUE lines, optionally
// preceded by "export"; # starts a comment line; values may be quoted with
// '...' (literal) or "..." (with \n, \t, \", \\ escapes); an unquoted value
// ends at " #".
func parseDotEnv(file string, data []byte, errs *errList) map[string]string {
	out := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 64*1024), 1<<20)
	line := 0
	for sc.Scan() {
		line++
		raw := sc.Text()
		text := strings.TrimLeft(raw, " \t")
		indent := len(raw) - len(text)
		if text == "" || text[0] == '#' {
			continue
		}
		if rest, ok := strings.CutPrefix(text, "export "); ok {
			indent += len(text) - len(strings.TrimLeft(rest, " \t"))
			text = strings.TrimLeft(rest, " \t")
		}
		name, val, ok := strings.Cut(text, "=")
		name = strings.TrimSpace(name)
		pos := Pos{file, line, indent + 1}
		if !ok {
			errs.add(pos, "want NAME=VALUE, not %q", text)
			continue
		}
		if !envName.MatchString(name) {
			errs.add(pos, "%q is not a variable name (valid: letters, digits and _, not starting with a digit)", name)
			continue
		}
		val = strings.TrimSpace(val)
		switch {
		case len(val) >= 1 && val[0] == '\'':
			end := strings.IndexByte(val[1:], '\'')
			if end < 0 {
				errs.add(pos, "%s: unterminated ' quote", name)
				continue
			}
			val = val[1 : end+1]
		case len(val) >= 1 && val[0] == '"':
			s, err := unquoteDouble(val)
			if err != nil {
				errs.add(pos, "%s: %v", name, err)
				continue
			}
			val = s
		default:
			if i := strings.Index(val, " #"); i >= 0 {
				val = strings.TrimSpace(val[:i])
			}
		}
		out[name] = val
	}
	if err := sc.Err(); err != nil {
		errs.add(Pos{File: file}, "reading: %v", err)
	}
	return out
}

// unquoteDouble decodes a "..." .env value, ignoring anything after the
// closing quote (a comment).
func unquoteDouble(s string) (string, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		switch c {
		case '"':
			return b.String(), nil
		case '\\':
			if i+1 >= len(s) {
				break
			}
			i++
			switch s[i] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			default:
				b.WriteByte(s[i])
			}
		default:
			b.WriteByte(c)
		}
	}
	return "", fmt.Errorf("unterminated \" quote")
}
