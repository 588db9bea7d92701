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
	"strconv"
	"strings"
)

const (
	wireMagic = "vial1"
	// wireMaxLine bounds a header or field line.
	wireMaxLine = 256
	// wireMaxMessage bounds one message (both capped outputs, a value, a
	// traceback and a few images fit easily).
	wireMaxMessage = 64 << 20
)

// Message kinds.
const (
	kindReady  = "ready"  // driver → vial, once, when the interpreter is up
	kindExec   = "exec"   // vial → driver: field code
	kindResult = "result" // driver → vial: the answer to exec with the same id
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

// readWireLine reads one '\n'-terminated line of at most wireMaxLine bytes.
func readWireLine(r *bufio.Reader) (string, error) {
	var line []byte
	for {
		frag, err := r.ReadSlice('\n')
		line = append(line, frag...)
		if len(line) > wireMaxLine {
			return "", errWireLine
		}
		if err == nil {
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

// readWireMsg reads one message. io.EOF means the stream ended cleanly
// between messages; any other error means the stream is unusable.
func readWireMsg(r *bufio.Reader) (*wireMsg, error) {
	line, err := readWireLine(r)
	if err != nil {
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
	budget := wireMaxMessage
	for {
		line, err := readWireLine(r)
		if err != nil {
			return nil, unexpected(err)
		}
		if line == "end" {
			return m, nil
		}
		name, size, ok := strings.Cut(line, " ")
		n, err := strconv.Atoi(size)
		if !ok || name == "" || err != nil || n < 0 {
			return nil, fmt.Errorf("bad field line %q", truncForError(line))
		}
		if n > budget {
			return nil, fmt.Errorf("message larger than %d bytes", wireMaxMessage)
		}
		budget -= n
		data := make([]byte, n+1)
		if _, err := io.ReadFull(r, data); err != nil {
			return nil, unexpected(err)
		}
		if data[n] != '\n' {
			return nil, fmt.Errorf("field %q not followed by a newline", truncForError(name))
		}
		m.Fields = append(m.Fields, wireField{Name: name, Data: data[:n]})
	}
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
