// Package tomltext writes TOML keys and strings: the one place vial quotes
// text for a TOML file (config show's output, the operator API's JSON
// bodies turned into TOML files).
package tomltext

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/vial-run/vial/internal/lazyre"
)

// BareKey matches a key that needs no quotes.
var BareKey = lazyre.New(`^[A-Za-z0-9_-]+$`)

// Key writes one part of a dotted key, quoted unless it is bare.
func Key(k string) string {
	if BareKey.MatchString(k) {
		return k
	}
	return String(k)
}

// String writes s as a TOML basic string. Control characters, DEL and
// invalid UTF-8 (as U+FFFD) are escaped, so the result is always valid
// TOML on one line.
func String(s string) string {
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
		case r < 0x20 || r == 0x7f || r == utf8.RuneError:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}
