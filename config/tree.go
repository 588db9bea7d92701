package config

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/pelletier/go-toml/v2"
	"github.com/pelletier/go-toml/v2/unstable"
)

// Level is one layer of the configuration; a higher level overrides a
// lower one.
type Level int

// The levels, lowest first. See the package documentation.
const (
	LevelBuiltin  Level = iota // compiled-in defaults and tool catalogue
	LevelSystem                // config/execution.toml, tools.toml, mcp.toml
	LevelTemplate              // config/environments/*.toml
	LevelAgent                 // agents/ID/agent.toml
	LevelRuntime               // --set, API and tool-call overrides
)

// String names the level as messages and --explain do.
func (l Level) String() string {
	switch l {
	case LevelBuiltin:
		return "built-in"
	case LevelSystem:
		return "system"
	case LevelTemplate:
		return "template"
	case LevelAgent:
		return "agent"
	case LevelRuntime:
		return "runtime"
	}
	return fmt.Sprintf("level(%d)", int(l))
}

// source is the file (or flag, or API call) a layer came from.
type source struct {
	Level Level
	Name  string // template or agent name, "" otherwise
	File  string // as shown in messages
}

// label is how --explain names the source.
func (s *source) label() string {
	if s == nil {
		return "unknown"
	}
	if s.Name != "" {
		return fmt.Sprintf("%s %s, %s", s.Level, s.Name, s.File)
	}
	return fmt.Sprintf("%s, %s", s.Level, s.File)
}

type kind uint8

const (
	kTable kind = iota + 1
	kArray
	kString
	kInt
	kFloat
	kBool
	kTime
)

// noun is the kind with its article, for messages ("an integer").
func (k kind) noun() string {
	switch k {
	case kTable:
		return "a table"
	case kArray:
		return "an array"
	case kString:
		return "a string"
	case kInt:
		return "an integer"
	case kFloat:
		return "a float"
	case kBool:
		return "a boolean"
	case kTime:
		return "a date or time"
	}
	return "nothing"
}

// node is one value of a parsed file, with where it was written. Trees of
// nodes are what the merge works on, so every merged value still knows its
// file, line and column.
type node struct {
	kind kind
	key  Pos // where the key was written (for array elements: the element)
	val  Pos // where the value starts, if known; else key
	src  *source

	tbl map[string]*node
	arr []*node
	s   string
	i   int64
	f   float64
	b   bool

	// secret marks a string that took a value from the agent's .env or
	// from a variable whose name looks secret; it is masked when shown.
	secret bool
	// interp marks a string that had ${...} expanded: its content checks
	// run after expansion.
	interp bool
}

// valPos is where to point an error about n's value.
func (n *node) valPos() Pos {
	if n.val.Line != 0 {
		return n.val
	}
	return n.key
}

// get follows a path of table keys; nil if any step is missing or not a
// table.
func (n *node) get(path ...string) *node {
	for _, k := range path {
		if n == nil || n.kind != kTable {
			return nil
		}
		n = n.tbl[k]
	}
	return n
}

// sortedKeys returns a table's keys in order.
func (n *node) sortedKeys() []string {
	keys := make([]string, 0, len(n.tbl))
	for k := range n.tbl {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// clone copies n deeply.
func (n *node) clone() *node {
	if n == nil {
		return nil
	}
	c := *n
	if n.tbl != nil {
		c.tbl = make(map[string]*node, len(n.tbl))
		for k, v := range n.tbl {
			c.tbl[k] = v.clone()
		}
	}
	if n.arr != nil {
		c.arr = make([]*node, len(n.arr))
		for i, v := range n.arr {
			c.arr[i] = v.clone()
		}
	}
	return &c
}

// strings returns the string elements of an array node.
func (n *node) strings() []string {
	if n == nil || n.kind != kArray {
		return nil
	}
	out := make([]string, 0, len(n.arr))
	for _, e := range n.arr {
		if e.kind == kString {
			out = append(out, e.s)
		}
	}
	return out
}

// any converts n to plain Go values: string, int64, float64, bool,
// []any and map[string]any.
func (n *node) any() any {
	switch n.kind {
	case kTable:
		m := make(map[string]any, len(n.tbl))
		for k, v := range n.tbl {
			m[k] = v.any()
		}
		return m
	case kArray:
		a := make([]any, len(n.arr))
		for i, v := range n.arr {
			a[i] = v.any()
		}
		return a
	case kInt:
		return n.i
	case kFloat:
		return n.f
	case kBool:
		return n.b
	}
	return n.s
}

func newTable(pos Pos, src *source) *node {
	return &node{kind: kTable, key: pos, src: src, tbl: map[string]*node{}}
}

// parse reads one TOML document into a tree of nodes. Syntax errors, and
// the semantic ones go-toml checks (duplicate keys, redefined tables), come
// back as one *Error with the position go-toml reports.
func parse(file string, data []byte, src *source) (*node, *Error) {
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			line, col := de.Position()
			return nil, &Error{Pos: Pos{file, line, col}, Msg: strings.TrimPrefix(de.Error(), "toml: ")}
		}
		return nil, &Error{Pos: Pos{File: file}, Msg: strings.TrimPrefix(err.Error(), "toml: ")}
	}
	ix := indexPositions(file, data)
	root := build(doc, nil, ix, src)
	root.key = Pos{File: file}
	return root, nil
}

// posIndex maps a key path (parts joined with pathSep) to where its key
// and its value were written.
type posIndex struct {
	file  string
	data  []byte
	lines []int // offset of the start of each line
	key   map[string]Pos
	val   map[string]Pos
}

const pathSep = "\x00"

func elemPart(i int) string { return "[" + strconv.Itoa(i) + "]" }

// at converts a byte offset to a position; the column counts characters.
func (ix *posIndex) at(off int) Pos {
	if off > len(ix.data) {
		off = len(ix.data)
	}
	i, found := slices.BinarySearch(ix.lines, off)
	if !found {
		i--
	}
	start := ix.lines[i]
	return Pos{File: ix.file, Line: i + 1, Col: utf8.RuneCount(ix.data[start:off]) + 1}
}

// lookup returns the recorded position of path, or that of its nearest
// recorded ancestor.
func (ix *posIndex) lookup(m map[string]Pos, path []string) (Pos, bool) {
	for n := len(path); n > 0; n-- {
		if p, ok := m[strings.Join(path[:n], pathSep)]; ok {
			return p, n == len(path)
		}
	}
	return Pos{File: ix.file}, false
}

// indexPositions walks the document with go-toml's parser, which keeps byte
// ranges, to record where every key and value was written. The document has
// already parsed cleanly, so a parser error here only stops the walk.
func indexPositions(file string, data []byte) *posIndex {
	ix := &posIndex{file: file, data: data, lines: []int{0}, key: map[string]Pos{}, val: map[string]Pos{}}
	for i, c := range data {
		if c == '\n' {
			ix.lines = append(ix.lines, i+1)
		}
	}
	var p unstable.Parser
	p.Reset(data)
	var cur []string
	aot := map[string]int{} // array-of-tables path -> count so far
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			// Each part of the header is recorded at its own place, so
			// that an unknown "secruity" in [sandbox.secruity] points at
			// the typo, not at "sandbox".
			var path []string
			var last Pos
			it := e.Key()
			for it.Next() {
				k := it.Node()
				last = ix.at(int(k.Raw.Offset))
				path = append(path, string(k.Data))
				ix.record(path, last)
				notLast := !it.IsLast()
				if n, ok := aot[strings.Join(path, pathSep)]; ok && n > 0 && (notLast || e.Kind == unstable.Table) {
					path = append(path, elemPart(n-1))
				}
			}
			if e.Kind == unstable.ArrayTable {
				j := strings.Join(path, pathSep)
				n := aot[j]
				aot[j] = n + 1
				path = append(path, elemPart(n))
			}
			ix.record(path, last)
			cur = path
		case unstable.KeyValue:
			ix.keyValue(cur, e)
		}
	}
	return ix
}

// record sets path's key position unless it is already set.
func (ix *posIndex) record(path []string, pos Pos) {
	j := strings.Join(path, pathSep)
	if _, ok := ix.key[j]; !ok {
		ix.key[j] = pos
	}
}

func (ix *posIndex) keyValue(base []string, e *unstable.Node) {
	path := slices.Clone(base)
	var keyPos Pos
	it := e.Key()
	for it.Next() {
		k := it.Node()
		path = append(path, string(k.Data))
		keyPos = ix.at(int(k.Raw.Offset))
		ix.record(path, keyPos)
	}
	ix.value(path, e.Value(), keyPos)
}

func (ix *posIndex) value(path []string, v *unstable.Node, keyPos Pos) {
	if v == nil {
		return
	}
	j := strings.Join(path, pathSep)
	if v.Raw.Length > 0 {
		ix.val[j] = ix.at(int(v.Raw.Offset))
	}
	switch v.Kind {
	case unstable.Array:
		i := 0
		it := v.Children()
		for it.Next() {
			c := it.Node()
			if c.Kind == unstable.Comment {
				continue
			}
			ep := append(slices.Clone(path), elemPart(i))
			pos := keyPos
			if c.Raw.Length > 0 {
				pos = ix.at(int(c.Raw.Offset))
			}
			ix.record(ep, pos)
			ix.value(ep, c, pos)
			i++
		}
	case unstable.InlineTable:
		it := v.Children()
		for it.Next() {
			if c := it.Node(); c.Kind == unstable.KeyValue {
				ix.keyValue(path, c)
			}
		}
	}
}

// build converts a decoded TOML value into nodes, attaching positions.
func build(v any, path []string, ix *posIndex, src *source) *node {
	n := &node{src: src}
	n.key, _ = ix.lookup(ix.key, path)
	if p, ok := ix.val[strings.Join(path, pathSep)]; ok && len(path) > 0 {
		n.val = p
	}
	switch v := v.(type) {
	case map[string]any:
		n.kind = kTable
		n.tbl = make(map[string]*node, len(v))
		for k, e := range v {
			n.tbl[k] = build(e, append(slices.Clone(path), k), ix, src)
		}
	case []any:
		n.kind = kArray
		n.arr = make([]*node, len(v))
		for i, e := range v {
			n.arr[i] = build(e, append(slices.Clone(path), elemPart(i)), ix, src)
		}
	case []map[string]any:
		n.kind = kArray
		n.arr = make([]*node, len(v))
		for i, e := range v {
			n.arr[i] = build(e, append(slices.Clone(path), elemPart(i)), ix, src)
		}
	case string:
		n.kind, n.s = kString, v
	case int64:
		n.kind, n.i = kInt, v
	case float64:
		n.kind, n.f = kFloat, v
	case bool:
		n.kind, n.b = kBool, v
	case time.Time:
		n.kind, n.s = kTime, v.Format(time.RFC3339Nano)
	default:
		n.kind, n.s = kTime, fmt.Sprint(v)
	}
	return n
}

// fromGo converts plain Go values (as decoded from JSON: map[string]any,
// []any, string, float64, bool, and ints) into nodes, all at pos. A float
// with an integral value becomes an integer, since JSON has only numbers.
func fromGo(v any, pos Pos, src *source) (*node, error) {
	n := &node{key: pos, src: src}
	switch v := v.(type) {
	case map[string]any:
		n.kind = kTable
		n.tbl = make(map[string]*node, len(v))
		for k, e := range v {
			c, err := fromGo(e, pos, src)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			n.tbl[k] = c
		}
	case []any:
		n.kind = kArray
		for _, e := range v {
			c, err := fromGo(e, pos, src)
			if err != nil {
				return nil, err
			}
			n.arr = append(n.arr, c)
		}
	case []string:
		n.kind = kArray
		for _, e := range v {
			n.arr = append(n.arr, &node{kind: kString, s: e, key: pos, src: src})
		}
	case string:
		n.kind, n.s = kString, v
	case bool:
		n.kind, n.b = kBool, v
	case int:
		n.kind, n.i = kInt, int64(v)
	case int64:
		n.kind, n.i = kInt, v
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			n.kind, n.i = kInt, int64(v)
		} else {
			n.kind, n.f = kFloat, v
		}
	default:
		return nil, fmt.Errorf("unsupported value of type %T", v)
	}
	return n, nil
}
