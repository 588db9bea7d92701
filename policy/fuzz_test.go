package policy

import (
	"path"
	"regexp"
	"slices"
	"strings"
	"testing"
)

var simpleWord = regexp.MustCompile(`^[a-z0-9][a-z0-9._=-]*$`)

// FuzzMatchCommand: the matcher never panics, and a pattern of plain words
// matches every quoting, spacing and nesting of itself that the guard
// promises to see through.
func FuzzMatchCommand(f *testing.F) {
	for _, s := range [][2]string{
		{"chmod 777", "chmod 777 f"},
		{"curl * | bash", "curl x | bash"},
		{":(){ :|:& };:", ":(){ :|:& };:"},
		{"dd if=", `$'dd' "if=/dev/zero"`},
		{"rm -rf /", "sh -c 'rm -rf /'"},
		{"a", "`a` $(a) <(a) {a,b}"},
		{"x", `"\`},
		{"x", `$'\`},
		{"*", "a;b|c&&d"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, command string) {
		got := MatchCommand(pattern, command)
		NormalizeCommand(command)
		if got && !MatchCommand(pattern, "ls;\n"+command) {
			t.Errorf("%q matches %q but not after another command", pattern, command)
		}
		words := strings.Fields(pattern)
		if len(words) == 0 || len(words) > 6 || strings.Contains(strings.TrimSpace(pattern), "\n") {
			return
		}
		for _, w := range words {
			if !simpleWord.MatchString(w) {
				return
			}
		}
		quote := func(f func(string) string) string {
			var out []string
			for _, w := range words {
				out = append(out, f(w))
			}
			return strings.Join(out, "  ")
		}
		plain := strings.Join(words, " ")
		for _, cmd := range []string{
			plain,
			quote(func(w string) string { return "'" + w + "'" }),
			quote(func(w string) string { return `"` + w + `"` }),
			quote(func(w string) string { return "$'" + w + "'" }),
			quote(func(w string) string { return `\` + w }),
			quote(func(w string) string { return w[:1] + "''" + w[1:] }),
			"true && " + plain + " x",
			"x=$(" + plain + ")",
			"echo `" + plain + "`",
			"sh -c '" + plain + "'",
			`bash -c "` + quote(func(w string) string { return `\"` + w + `\"` }) + `"`,
			"/usr/bin/" + plain,
		} {
			if !MatchCommand(pattern, cmd) {
				t.Errorf("pattern %q does not match %q (read as %s)", pattern, cmd, NormalizeCommand(cmd))
			}
		}
	})
}

// FuzzMatchPath: matching never panics and depends on the cleaned path,
// and what is under a matched path is matched too.
func FuzzMatchPath(f *testing.F) {
	for _, s := range [][2]string{
		{"**/.env", "a/.env"}, {"/etc/shadow", "/etc/shadow"}, {"secrets/*", "secrets/k"},
		{"/workspace/x", "x"}, {"a/[b", "c"}, {"*.pem", "a/b.pem"}, {"**", "."},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, pattern, p string) {
		got := MatchPath(pattern, p)
		if p == "" || strings.HasPrefix(p, "/") {
			return
		}
		rel, inside := workspaceRel(p)
		same := []string{"./" + p, "a/../" + p, p + "/."}
		if inside {
			same = append(same, "/workspace/"+p)
		}
		for _, q := range same {
			if MatchPath(pattern, q) != got {
				t.Errorf("MatchPath(%q, %q) = %v but %q gives %v", pattern, p, got, q, !got)
			}
		}
		if got && inside {
			if child := path.Join(rel, "child"); !MatchPath(pattern, child) {
				t.Errorf("%q matches %q but not %q under it", pattern, p, child)
			}
		}
	})
}

// FuzzPythonImports: the scan never panics, its output is sorted and
// unique, and text after an import cannot hide it.
func FuzzPythonImports(f *testing.F) {
	for _, s := range []string{
		"import os\nos.system('x')", `f"{__import__("x")}"`, "from a import (b as c,\n d)", `exec("import x")`,
		"'''", `f"{`, "__import__(", "import ｓｕｂ", "\\\n", "from . import x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, code string) {
		refs := PythonImports(code)
		if !slices.IsSorted(refs) || len(slices.Compact(slices.Clone(refs))) != len(refs) {
			t.Errorf("refs not sorted and unique: %q", refs)
		}
		if _, _, ok := BlockedImport([]string{"subprocess"}, "import subprocess\n"+code); !ok {
			t.Errorf("code after an import hid it: %q", code)
		}
	})
}

// FuzzHostAllow: Allow never panics, Blocked always wins, and case does
// not matter.
func FuzzHostAllow(f *testing.F) {
	for _, s := range []string{"localhost", "*.internal", "10.0.0.0/8", "[::1]:80", "a.example:443", "127.1", "*", ""} {
		f.Add(s, "a.example", 443)
		f.Add(s, s, 0)
	}
	f.Fuzz(func(t *testing.T, entry, host string, port int) {
		h := HostRules{Allowed: []string{entry}, Blocked: []string{entry}}
		if ok, rule := h.Allow(host, port); ok {
			t.Errorf("entry %q both allowed and blocked, host %q allowed by %s", entry, host, rule)
		}
		b := HostRules{Blocked: []string{entry}}
		ok1, r1 := b.Allow(host, port)
		ok2, r2 := b.Allow(strings.ToUpper(host), port)
		if ok1 != ok2 || r1 != r2 {
			t.Errorf("case changed the answer for %q / %q: %v %s vs %v %s", entry, host, ok1, r1, ok2, r2)
		}
		if b.Validate() == nil && ok1 && strings.EqualFold(entry, host) {
			t.Errorf("host %q passes the entry %q naming it", host, entry)
		}
	})
}

// FuzzDecide: Decide never panics, always gives a rule and a reason, and
// nothing it lets through touches a protected path.
func FuzzDecide(f *testing.F) {
	f.Add("read_file", ".env", "", "", "", "", int64(5), 0)
	f.Add("run_shell", "", "chmod 777 f", "", "", "", int64(-1), 0)
	f.Add("run_code", "", "", "import os", "python", "", int64(-1), 0)
	f.Add("http_request", "", "", "", "", "localhost", int64(-1), 80)
	f.Fuzz(func(t *testing.T, tool, p, command, code, lang, host string, size int64, port int) {
		r := seedRules()
		r.Dangerous.Mode = DangerWarn
		c := Call{Tool: tool, Paths: []string{p}, Command: command, Code: code, Language: lang, Host: host, Port: port, Size: size, Method: "GET"}
		d := r.Decide(c)
		if d.Rule == "" || d.Reason == "" {
			t.Errorf("no rule or reason: %s", d)
		}
		if d.Effect != Deny && r.Hidden(tool, p) {
			t.Errorf("%s lets %q through", d, p)
		}
		if d.Effect != Deny && command != "" {
			if pat, hit := BlockedCommand(r.Tools["run_shell"].BlockedCommands, command); hit {
				t.Errorf("%s lets %q through, blocked by %q", d, command, pat)
			}
		}
	})
}
