// Package mask replaces secret values (the configuration's API keys,
// tokens, passwords) in text that logs and audit records carry.
package mask

import (
	"cmp"
	"slices"
	"strings"

	"github.com/vial-run/vial/internal/human"
)

// Placeholder replaces each secret.
const Placeholder = "********"

// MinLen is the shortest secret masked: shorter values would mask ordinary
// words and digits, and a secret that short protects nothing anyway.
const MinLen = 4

// Masker replaces secret values. A nil *Masker masks nothing. Safe for
// concurrent use.
type Masker struct {
	secrets []string // longest first
	r       *strings.Replacer
}

// New returns a Masker for secrets, or nil when none is at least MinLen
// bytes long.
func New(secrets []string) *Masker {
	var ss []string
	for _, s := range secrets {
		if len(s) >= MinLen && !slices.Contains(ss, s) {
			ss = append(ss, s)
		}
	}
	if len(ss) == 0 {
		return nil
	}
	// Longest first: where one secret is a prefix of another, the longer
	// one is masked whole rather than leaving its tail visible.
	slices.SortStableFunc(ss, func(a, b string) int { return cmp.Compare(len(b), len(a)) })
	pairs := make([]string, 0, 2*len(ss))
	for _, s := range ss {
		pairs = append(pairs, s, Placeholder)
	}
	return &Masker{secrets: ss, r: strings.NewReplacer(pairs...)}
}

// Replace returns s with every secret replaced by Placeholder.
func (m *Masker) Replace(s string) string {
	if m == nil {
		return s
	}
	return m.r.Replace(s)
}

// Cut returns the masked form of at most the first n bytes of s (cut at a
// character boundary), and whether anything was cut off. A secret that
// starts within those n bytes is replaced whole, even where it runs past
// them: cutting first and masking afterwards would leave the part of a
// secret before the cut in clear. It reads at most n plus the longest
// secret's length bytes of s, so its cost does not grow with s.
func (m *Masker) Cut(s string, n int) (string, bool) {
	if n < 0 {
		n = 0
	}
	if m == nil {
		if len(s) <= n {
			return s, false
		}
		return human.Prefix(s, n), true
	}
	n = len(human.Prefix(s, n))
	var b strings.Builder
	i := 0
	for i < len(s) && i < n {
		matched := false
		for _, sec := range m.secrets {
			if strings.HasPrefix(s[i:], sec) {
				b.WriteString(Placeholder)
				i += len(sec)
				matched = true
				break
			}
		}
		if !matched {
			b.WriteByte(s[i])
			i++
		}
	}
	return b.String(), i < len(s)
}
