package config

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/vial-run/vial/internal/tomltext"
)

// Masked is what a secret is shown as.
const Masked = "********"

// Format writes the merged configuration as TOML, secrets masked. With
// explain, each value is followed by a comment naming the layer and
// file:line:col it came from. The output is itself a valid layer file.
func (r *Resolved) Format(w io.Writer, explain bool) error {
	var b strings.Builder
	p := &printer{b: &b, explain: explain}
	p.table(r.tree, "")
	_, err := io.WriteString(w, strings.TrimLeft(b.String(), "\n"))
	return err
}

type printer struct {
	b       *strings.Builder
	explain bool
}

// table prints the scalars and arrays of t under a [path] header, then its
// sub-tables, each sorted by key.
func (p *printer) table(t *node, path string) {
	keys := t.sortedKeys()
	if path == "" {
		keys = topOrder(keys)
	}
	var leaves, subs []string
	for _, k := range keys {
		if t.tbl[k].kind == kTable {
			subs = append(subs, k)
		} else {
			leaves = append(leaves, k)
		}
	}
	if path != "" && (len(leaves) > 0 || len(subs) == 0) {
		fmt.Fprintf(p.b, "\n[%s]\n", path)
	}
	for _, k := range leaves {
		v := t.tbl[k]
		line := tomltext.Key(k) + " = " + p.value(v)
		if p.explain {
			line += "  # " + v.src.label() + explainPos(v)
			if v.secret || anySecret(v) {
				line += " (secret)"
			}
		}
		p.b.WriteString(line + "\n")
	}
	for _, k := range subs {
		p.table(t.tbl[k], joinPath(path, k))
	}
}

func explainPos(n *node) string {
	if n.key.Line == 0 {
		return ""
	}
	return fmt.Sprintf(":%d:%d", n.key.Line, n.key.Col)
}

func anySecret(n *node) bool {
	for _, e := range n.arr {
		if e.secret || anySecret(e) {
			return true
		}
	}
	for _, e := range n.tbl {
		if e.secret || anySecret(e) {
			return true
		}
	}
	return false
}

// value formats a value inline; secrets are masked.
func (p *printer) value(n *node) string {
	if n.secret {
		return tomltext.String(Masked)
	}
	switch n.kind {
	case kString:
		return tomltext.String(n.s)
	case kInt:
		return strconv.FormatInt(n.i, 10)
	case kFloat:
		s := strconv.FormatFloat(n.f, 'f', -1, 64)
		if !strings.ContainsAny(s, ".eEnN") {
			s += ".0"
		}
		return s
	case kBool:
		return strconv.FormatBool(n.b)
	case kTime:
		return n.s
	case kArray:
		parts := make([]string, len(n.arr))
		total := 0
		for i, e := range n.arr {
			parts[i] = p.value(e)
			total += len(parts[i]) + 2
		}
		if total > 72 {
			return "[\n    " + strings.Join(parts, ",\n    ") + ",\n]"
		}
		return "[" + strings.Join(parts, ", ") + "]"
	case kTable:
		parts := make([]string, 0, len(n.tbl))
		for _, k := range n.sortedKeys() {
			parts = append(parts, tomltext.Key(k)+" = "+p.value(n.tbl[k]))
		}
		return "{ " + strings.Join(parts, ", ") + " }"
	}
	return `""`
}

// sectionOrder is the order of the top-level tables in show's output: the
// seed's order, not the alphabet's.
var sectionOrder = []string{"metadata", "extends", "sandbox", "shell", "tools", "mcp", "hitl", "logging"}

func topOrder(keys []string) []string {
	out := make([]string, 0, len(keys))
	for _, k := range sectionOrder {
		if slices.Contains(keys, k) {
			out = append(out, k)
		}
	}
	for _, k := range keys {
		if !slices.Contains(sectionOrder, k) {
			out = append(out, k)
		}
	}
	return out
}
