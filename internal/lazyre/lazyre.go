// Package lazyre holds regular expressions that are compiled on first use
// rather than at package initialisation.
//
// Every vial process pays for every package's init before main: `vial
// run` for the API's and the MCP front end's patterns as much as `vial
// serve` does. A bounded repetition such as `[a-z]{0,127}` compiles to a
// program with one instruction group per repetition (86 µs and 1 700
// allocations for that one), and vial's few dozen patterns together cost a
// cold start about a millisecond. A Regexp is declared like a compiled
// one, and its first match compiles it.
package lazyre

import (
	"regexp"
	"sync"
)

// Regexp is a regular expression compiled on first use. Its methods are
// safe for concurrent use. An invalid expression panics on first use, as
// regexp.MustCompile does at init: tests exercise every pattern.
type Regexp struct {
	expr string
	re   func() *regexp.Regexp
}

// New returns expr, to be compiled when it is first matched.
func New(expr string) *Regexp {
	return &Regexp{expr: expr, re: sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(expr) })}
}

// MatchString reports whether s contains a match of the expression.
func (r *Regexp) MatchString(s string) bool { return r.re().MatchString(s) }

// FindStringSubmatch is regexp.Regexp's FindStringSubmatch.
func (r *Regexp) FindStringSubmatch(s string) []string { return r.re().FindStringSubmatch(s) }

// FindAllStringSubmatch is regexp.Regexp's FindAllStringSubmatch.
func (r *Regexp) FindAllStringSubmatch(s string, n int) [][]string {
	return r.re().FindAllStringSubmatch(s, n)
}

// ReplaceAllStringFunc is regexp.Regexp's ReplaceAllStringFunc.
func (r *Regexp) ReplaceAllStringFunc(src string, repl func(string) string) string {
	return r.re().ReplaceAllStringFunc(src, repl)
}

// String returns the source text of the expression.
func (r *Regexp) String() string { return r.expr }
