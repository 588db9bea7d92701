package audit

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// maxTailBytes bounds what AuditTail reads and returns.
const maxTailBytes = 16 << 20

// AuditTail returns the last n records of the log, one JSON object per
// line, oldest first: the day files are read newest first, from their
// ends, so the cost follows n, not the log's size. At most 16 MiB is
// returned (fewer records if they are larger). Records still queued for
// the writer are not included. It satisfies the operator API's
// AuditSource.
func (l *Log) AuditTail(n int) ([]byte, error) {
	if n <= 0 {
		return nil, nil
	}
	d, err := l.root.Open(".")
	if err != nil {
		return nil, fmt.Errorf("reading the audit log: %w", err)
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, fmt.Errorf("reading the audit log: %w", err)
	}
	var days []string
	for _, name := range names {
		if day, ok := dayOf(name); ok {
			days = append(days, day)
		}
	}
	slices.Sort(days)
	var parts [][]byte // newest file first
	budget := maxTailBytes
	for i := len(days) - 1; i >= 0 && n > 0 && budget > 0; i-- {
		b, got, err := l.tail(fileName(days[i]), n, budget)
		if err != nil {
			return nil, err
		}
		parts = append(parts, b)
		n -= got
		budget -= len(b)
	}
	slices.Reverse(parts)
	return bytes.Join(parts, nil), nil
}

// dayOf returns the day of an audit file's name.
func dayOf(name string) (string, bool) {
	day, ok := strings.CutPrefix(name, filePrefix)
	if !ok {
		return "", false
	}
	day, ok = strings.CutSuffix(day, fileSuffix)
	if !ok {
		return "", false
	}
	if _, err := time.Parse(time.DateOnly, day); err != nil {
		return "", false
	}
	return day, true
}

// tail returns the last (at most n) complete lines of a file, reading
// backwards in chunks, at most budget bytes; got is how many.
func (l *Log) tail(name string, n, budget int) (b []byte, got int, err error) {
	f, err := l.root.Open(name)
	if err != nil {
		return nil, 0, fmt.Errorf("reading the audit log: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, fmt.Errorf("reading the audit log: %w", err)
	}
	end := fi.Size()
	var buf []byte
	pos := end
	for pos > 0 && bytes.Count(buf, []byte("\n")) <= n && len(buf) < budget {
		size := min(int64(64<<10), pos)
		chunk := make([]byte, size)
		if _, err := f.ReadAt(chunk, pos-size); err != nil && !errors.Is(err, io.EOF) {
			return nil, 0, fmt.Errorf("reading the audit log: %w", err)
		}
		buf = append(chunk, buf...)
		pos -= size
	}
	// Drop a last line still being written (no newline yet).
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		buf = buf[:i+1]
	} else {
		return nil, 0, nil
	}
	// Keep the last n complete lines. The first line of buf is cut unless
	// the read reached the start of the file.
	lines := bytes.SplitAfter(buf, []byte("\n"))
	lines = lines[:len(lines)-1] // the empty piece after the final newline
	if pos > 0 && len(lines) > 0 {
		lines = lines[1:]
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	for len(lines) > 0 && sumLen(lines) > budget {
		lines = lines[1:]
	}
	return bytes.Join(lines, nil), len(lines), nil
}

func sumLen(lines [][]byte) int {
	s := 0
	for _, l := range lines {
		s += len(l)
	}
	return s
}
