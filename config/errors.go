package config

import (
	"github.com/containerd/errdefs"

	"cmp"
	"errors"
	"fmt"
	"slices"
)

// Error classes, checked with errors.Is.
var (
	// ErrInvalid is the class of every configuration error: a bad file, a
	// bad value, an unknown key, tool or template.
	ErrInvalid = errdefs.ErrInvalidArgument.WithMessage("invalid configuration")
	// ErrNotFound is returned when the agent asked for has no directory.
	ErrNotFound = errdefs.ErrNotFound
	// ErrAboveCeiling is returned by Resolved.Tighten when a request asks
	// for more than the configuration allows.
	ErrAboveCeiling = errdefs.ErrOutOfRange.WithMessage("above the configured limit")
)

// Pos is a place in a configuration file. Line and Col count from 1; a zero
// Line means the place is the whole of File (a --set flag, a missing file).
type Pos struct {
	File      string
	Line, Col int
}

// String formats p as file:line:col, or just the file when Line is zero.
func (p Pos) String() string {
	if p.Line == 0 {
		return p.File
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Error is one configuration problem at one place. Its text is
// "file:line:col: message"; the message names the key and, where there is
// a closed set, ends with "(valid: ...)".
type Error struct {
	Pos Pos
	Msg string
	// class is ErrInvalid unless set.
	class error
}

// Error formats e as "file:line:col: message".
func (e *Error) Error() string {
	if e.Pos.File == "" {
		return e.Msg
	}
	return e.Pos.String() + ": " + e.Msg
}

// Is reports whether target is the error's class (ErrInvalid by default).
func (e *Error) Is(target error) bool {
	if e.class != nil {
		return target == e.class
	}
	return target == ErrInvalid
}

// Errors returns every *Error inside err (as returned by Load or Validate),
// in the order they are reported. It returns nil for a nil err.
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		if e, ok := err.(*Error); ok {
			out = append(out, e)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, e := range j.Unwrap() {
				walk(e)
			}
			return
		}
		if u := errors.Unwrap(err); u != nil {
			walk(u)
		}
	}
	walk(err)
	return out
}

// errList collects errors so that all of them can be reported at once.
type errList struct {
	errs []*Error
	seen map[string]bool
	// rank orders files: lowest layer first, then in reading order.
	rank map[string]int
}

func (l *errList) add(pos Pos, format string, args ...any) {
	l.addErr(&Error{Pos: pos, Msg: fmt.Sprintf(format, args...)})
}

func (l *errList) addErr(e *Error) {
	key := e.Error()
	if l.seen == nil {
		l.seen = map[string]bool{}
	}
	if l.seen[key] {
		return
	}
	l.seen[key] = true
	l.errs = append(l.errs, e)
}

// fileRank registers a file of a level, so that its errors sort after
// those of lower levels and of files of the same level read before it.
// Unregistered files (--set flags) sort last.
func (l *errList) fileRank(file string, level Level) {
	if l.rank == nil {
		l.rank = map[string]int{}
	}
	if _, ok := l.rank[file]; !ok {
		l.rank[file] = int(level)<<20 | len(l.rank)
	}
}

// err returns the collected errors sorted by file (in reading order), line
// and column, joined; nil if there are none.
func (l *errList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	for _, e := range l.errs {
		l.fileRank(e.Pos.File, LevelRuntime+1)
	}
	sorted := slices.Clone(l.errs)
	slices.SortStableFunc(sorted, func(a, b *Error) int {
		return cmp.Or(
			cmp.Compare(l.rank[a.Pos.File], l.rank[b.Pos.File]),
			cmp.Compare(a.Pos.Line, b.Pos.Line),
			cmp.Compare(a.Pos.Col, b.Pos.Col),
		)
	})
	errs := make([]error, len(sorted))
	for i, e := range sorted {
		errs[i] = e
	}
	return errors.Join(errs...)
}
