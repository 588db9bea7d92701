package egress

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"time"
)

// maxHelloBytes bounds what vial reads while looking for a ClientHello. A
// real one is a few hundred bytes to a few KiB (post-quantum key shares
// make it larger); a client that sends more without completing one is not
// speaking TLS.
const maxHelloBytes = 64 << 10

var errGotHello = errors.New("got the client hello")

// readClientHello reads a TLS ClientHello from r without answering it and
// returns the server name it asks for and every byte read, to be replayed
// to the upstream unchanged: vial looks at the name, it never terminates
// or inspects the TLS session. crypto/tls does the parsing (fragmented
// records and all); its handshake is stopped as soon as the hello is in.
func readClientHello(r io.Reader) (serverName string, raw []byte, err error) {
	var buf bytes.Buffer
	tee := io.TeeReader(io.LimitReader(r, maxHelloBytes), &buf)
	var hello *tls.ClientHelloInfo
	herr := tls.Server(readOnlyConn{r: tee}, &tls.Config{
		GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
			hello = h
			return nil, errGotHello
		},
	}).Handshake()
	if hello == nil {
		return "", buf.Bytes(), herr
	}
	return hello.ServerName, buf.Bytes(), nil
}

// readOnlyConn feeds crypto/tls the client's bytes and swallows what it
// would write back (an alert when the handshake is stopped).
type readOnlyConn struct{ r io.Reader }

func (c readOnlyConn) Read(p []byte) (int, error)     { return c.r.Read(p) }
func (c readOnlyConn) Write(p []byte) (int, error)    { return len(p), nil }
func (readOnlyConn) Close() error                     { return nil }
func (readOnlyConn) LocalAddr() net.Addr              { return nil }
func (readOnlyConn) RemoteAddr() net.Addr             { return nil }
func (readOnlyConn) SetDeadline(time.Time) error      { return nil }
func (readOnlyConn) SetReadDeadline(time.Time) error  { return nil }
func (readOnlyConn) SetWriteDeadline(time.Time) error { return nil }
