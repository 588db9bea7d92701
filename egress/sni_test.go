package egress

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"strings"
	"testing"

	"github.com/vial-run/vial/internal/testupstream"
)

// helloFrom returns the bytes a real TLS client sends first.
func helloFrom(t *testing.T, serverName string) []byte {
	t.Helper()
	c, s := net.Pipe()
	go func() {
		tls.Client(c, &tls.Config{ServerName: serverName, InsecureSkipVerify: true}).Handshake()
		c.Close()
	}()
	var buf bytes.Buffer
	b := make([]byte, 64<<10)
	n, _ := s.Read(b) // the hello is written in one go
	buf.Write(b[:n])
	s.Close()
	return buf.Bytes()
}

func TestReadClientHello(t *testing.T) {
	hello := helloFrom(t, "Allowed.Test")
	// Whatever the client sends after the hello must be replayed too.
	input := append(append([]byte{}, hello...), "more"...)
	name, raw, err := readClientHello(bytes.NewReader(input))
	if err != nil || name != "Allowed.Test" {
		t.Fatalf("readClientHello = %q, %v", name, err)
	}
	if !bytes.HasPrefix(input, raw) || len(raw) < len(hello) {
		t.Errorf("raw (%d bytes) is not the start of what the client sent (%d bytes of hello)", len(raw), len(hello))
	}
	// One byte at a time (a hello split over many reads and records).
	name, _, err = readClientHello(io.MultiReader(oneByte{bytes.NewReader(hello)}))
	if err != nil || name != "Allowed.Test" {
		t.Errorf("byte by byte: %q, %v", name, err)
	}
	if name, _, err := readClientHello(bytes.NewReader(helloFrom(t, ""))); err != nil || name != "" {
		t.Errorf("no server name: %q, %v", name, err)
	}
	for _, bad := range []string{"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "SSH-2.0-OpenSSH_9.2\r\n", ""} {
		if name, _, err := readClientHello(strings.NewReader(bad)); err == nil {
			t.Errorf("%q was taken for a ClientHello naming %q", bad, name)
		}
	}
}

// TestReadClientHelloBound: a client that streams bytes that look like
// the start of a TLS record but never completes a hello is cut off after
// maxHelloBytes.
func TestReadClientHelloBound(t *testing.T) {
	// A handshake record header announcing the largest record, then an
	// endless supply of bytes.
	endless := io.MultiReader(bytes.NewReader([]byte{0x16, 0x03, 0x01, 0x40, 0x00, 0x01, 0xff, 0xff, 0xff}), testupstream.Zeros{})
	cr := &countingReader{r: endless}
	if _, _, err := readClientHello(cr); err == nil {
		t.Fatal("garbage was taken for a hello")
	}
	if cr.n > maxHelloBytes {
		t.Errorf("read %d bytes looking for a hello; the bound is %d", cr.n, maxHelloBytes)
	}
}

type oneByte struct{ r io.Reader }

func (o oneByte) Read(p []byte) (int, error) { return o.r.Read(p[:1]) }

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
