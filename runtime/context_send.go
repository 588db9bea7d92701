package runtime

import (
	"io"
	"syscall"

	"golang.org/x/sys/unix"
)

// send writes a request to the driver and returns a channel that receives
// the write's outcome. The write must never hold up the caller, who waits
// for the answer under the call's deadline and its context: a driver that
// stops reading would otherwise hang the call. So the request goes out in
// a single attempt that cannot block — the driver has read every earlier
// request (it answered them), so its pipe is normally empty and takes a
// whole ordinary request at once — and whatever that attempt does not
// write, a goroutine writes. On the warm path that saves a goroutine and
// a hand-off per call; before, every request was written by a goroutine of
// its own.
func (c *Context) send(data []byte) <-chan error {
	written := make(chan error, 1)
	if c.write.TryLock() {
		n, ok := tryWrite(c.t.Stdin(), data)
		if ok && n == len(data) {
			c.write.Unlock()
			written <- nil
			return written
		}
		go func() {
			defer c.write.Unlock()
			_, err := c.t.Stdin().Write(data[n:])
			written <- err
		}()
		return written
	}
	go func() {
		// Another write is still going (an earlier request the driver has
		// not taken in full): queue behind it.
		c.write.Lock()
		defer c.write.Unlock()
		_, err := c.t.Stdin().Write(data)
		written <- err
	}()
	return written
}

// tryWrite makes one write of p to w that does not wait: on a
// non-blocking descriptor (os.Pipe's are) it writes what the pipe has room
// for now. ok is false when w is not such a descriptor or the attempt
// failed; n bytes were written either way.
func tryWrite(w io.Writer, p []byte) (n int, ok bool) {
	sc, isConn := w.(syscall.Conn)
	if !isConn {
		return 0, false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return 0, false
	}
	var werr error
	blocking := false
	err = rc.Write(func(fd uintptr) bool {
		if fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0); err != nil || fl&unix.O_NONBLOCK == 0 {
			// A write on a blocking descriptor could wait.
			blocking = true
			return true
		}
		for n < len(p) {
			k, err := unix.Write(int(fd), p[n:])
			if k > 0 {
				n += k
			}
			if err == unix.EINTR {
				continue
			}
			if err != nil || k <= 0 {
				werr = err
				break
			}
		}
		return true // never wait for the descriptor to become writable
	})
	return n, err == nil && !blocking && (werr == nil || werr == unix.EAGAIN)
}
