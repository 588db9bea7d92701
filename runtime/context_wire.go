package runtime

// The wire protocol between vial and a driver (see drivers/README.md).
//
// A message is a header line, any number of fields and an end line:
//
//	vial1 <kind> <id>\n
//	<name> <length>\n<length raw bytes>\n     (repeated)
//	end\n
//
// Field values are raw bytes, so output, tracebacks and PNG images need no
// escaping and a driver written in bash can produce them with printf and
// cat. Unknown fields are ignored; a field may repeat (image_png). The
// format was chosen over JSON lines because bash cannot escape JSON without
// a helper process per byte, and over a binary length prefix because it can
// be read by eye in a strace.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

const (
	wireMagic = "vial1"
	// wireMaxLine bounds a header or field line.
	wireMaxLine = 256
	// wireMaxFields bounds the fields of one message. A result has about
	// fifteen named fields and at most maxImages images; the rest of the
	// room is for fields a newer driver may add. Without a bound, a
	// stream of empty fields ("x 0\n\n", five bytes each) would cost
	// vial a field header per five bytes a sandbox writes.
	wireMaxFields = 128
	// wireMaxStray bounds the bytes vial drains from a driver's output
	// while no call is waiting for an answer. A driver writes nothing
	// then, so they come from something else in the sandbox (a forked
	// child of the driver holds the same pipe); past this much the
	// context is stopped rather than read forever.
	wireMaxStray = 4 << 10
	// wireReadStep is how much of a field is read into memory at once: a
	// field's length is the sender's claim, so memory grows with the
	// bytes that actually arrived, never with the claim.
	wireReadStep = 256 << 10
	// wireMaxReady bounds the driver's first message (language, version).
	wireMaxReady = 64 << 10
)

// Message kinds.
const (
	kindReady  = "ready"  // driver → vial, once, when the interpreter is up
	kindExec   = "exec"   // vial → driver: field code
	kindResult = "result" // driver → vial: the answer to exec with the same id
	kindPing   = "ping"   // vial → driver: no fields; a health check
	kindPong   = "pong"   // driver → vial: the answer to ping with the same id, at once
)

type wireField struct {
	Name string
	Data []byte
}

type wireMsg struct {
	Kind   string
	ID     uint64
	Fields []wireField
}

// get returns the first field called name.
func (m *wireMsg) get(name string) ([]byte, bool) {
	for _, f := range m.Fields {
		if f.Name == name {
			return f.Data, true
		}
	}
	return nil, false
}

func (m *wireMsg) str(name string) string {
	b, _ := m.get(name)
	return string(b)
}

func (m *wireMsg) int(name string) int64 {
	b, ok := m.get(name)
	if !ok {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
	return n
}

func (m *wireMsg) flag(name string) bool {
	b, ok := m.get(name)
	return ok && len(b) > 0 && b[0] != '0'
}

// encode renders m in wire form.
func (m *wireMsg) encode() []byte {
	n := 32
	for _, f := range m.Fields {
		n += len(f.Name) + len(f.Data) + 24
	}
	b := make([]byte, 0, n)
	b = fmt.Appendf(b, "%s %s %d\n", wireMagic, m.Kind, m.ID)
	for _, f := range m.Fields {
		b = fmt.Appendf(b, "%s %d\n", f.Name, len(f.Data))
		b = append(b, f.Data...)
		b = append(b, '\n')
	}
	return append(b, "end\n"...)
}

var errWireLine = errors.New("line too long")

// readWireLine reads one '\n'-terminated line of at most wireMaxLine bytes
// and returns it without the '\n'. The line, newline included, is charged
// to *budget; a line that does not fit is an error.
func readWireLine(r *bufio.Reader, budget *int) (string, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > wireMaxLine {
			return "", errWireLine
		}
		if len(line) > *budget {
			return "", errWireTooLarge
		}
		if err == nil {
			*budget -= len(line)
			return string(line[:len(line)-1]), nil
		}
		if !errors.Is(err, bufio.ErrBufferFull) {
			if err == io.EOF && len(line) > 0 {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
	}
}

// errWireTooLarge is returned by readWireMsg for a message over its limit;
// readWireMsg wraps it with the limit.
var errWireTooLarge = errors.New("message too large")

// readWireMsg reads one message of at most limit bytes, every byte
// counted: the header, the field lines, the data and the newlines that
// frame them. It reads at most wireMaxFields fields, and memory for a
// field grows with the bytes that arrive, not with the length the sender
// announced. io.EOF means the stream ended cleanly between messages; any
// other error means the stream is unusable.
func readWireMsg(r *bufio.Reader, limit int) (*wireMsg, error) {
	budget := limit
	tooLarge := func() error { return fmt.Errorf("a message larger than %d bytes", limit) }
	line, err := readWireLine(r, &budget)
	if err != nil {
		if err == errWireTooLarge {
			return nil, tooLarge()
		}
		return nil, err
	}
	hdr := strings.Fields(line)
	if len(hdr) != 3 || hdr[0] != wireMagic {
		return nil, fmt.Errorf("bad message header %q", truncForError(line))
	}
	id, err := strconv.ParseUint(hdr[2], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("bad message id %q", truncForError(hdr[2]))
	}
	m := &wireMsg{Kind: hdr[1], ID: id}
	for {
		line, err := readWireLine(r, &budget)
		if err != nil {
			if err == errWireTooLarge {
				return nil, tooLarge()
			}
			return nil, unexpected(err)
		}
		if line == "end" {
			return m, nil
		}
		if len(m.Fields) == wireMaxFields {
			return nil, fmt.Errorf("more than %d fields in one message", wireMaxFields)
		}
		name, size, ok := strings.Cut(line, " ")
		n, err := strconv.Atoi(size)
		if !ok || name == "" || err != nil || n < 0 {
			return nil, fmt.Errorf("bad field line %q", truncForError(line))
		}
		if n >= budget { // the data and its newline
			return nil, tooLarge()
		}
		budget -= n + 1
		data, err := readWireData(r, n+1)
		if err != nil {
			return nil, unexpected(err)
		}
		if data[n] != '\n' {
			return nil, fmt.Errorf("field %q not followed by a newline", truncForError(name))
		}
		m.Fields = append(m.Fields, wireField{Name: name, Data: data[:n]})
	}
}

// readWireData reads exactly n bytes, growing its buffer as they arrive
// (at most wireReadStep at a time), so that a length announced but never
// sent costs no more memory than what was sent.
func readWireData(r *bufio.Reader, n int) ([]byte, error) {
	data := make([]byte, 0, min(n, wireReadStep))
	for len(data) < n {
		if len(data) == cap(data) {
			data = slices.Grow(data, min(n-len(data), max(len(data), wireReadStep)))
		}
		k, err := r.Read(data[len(data):min(cap(data), n)])
		data = data[:len(data)+k]
		if err != nil && len(data) < n {
			return nil, err
		}
	}
	return data, nil
}

func unexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}

func truncForError(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return string(bytes.ToValidUTF8([]byte(s), []byte("?")))
}
