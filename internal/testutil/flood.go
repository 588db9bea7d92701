package testutil

// Hostile programs shared by the runtime's tests and the end-to-end tests
// (issue 10's wire flood).

// WireFloodPrelude defines flood(prefix, chunk, delay) in a Python context: a
// forked child of the driver finds the driver's answer pipe among its
// descriptors (a write-only pipe that is not stdout or stderr, as any
// process in the sandbox could through /proc), waits delay seconds, then
// writes prefix and chunk after chunk to it, forever.
const WireFloodPrelude = `
import os, time
def _answer_pipe():
    skip = {os.readlink('/proc/self/fd/1'), os.readlink('/proc/self/fd/2')}
    for name in os.listdir('/proc/self/fd'):
        fd = int(name)
        try:
            link = os.readlink('/proc/self/fd/%d' % fd)
            with open('/proc/self/fdinfo/%d' % fd) as f:
                flags = int(f.read().split('flags:')[1].split()[0], 8)
        except (OSError, IndexError, ValueError):
            continue
        # gVisor shows the pipes from the host as host:[N].
        if link.startswith(('pipe:', 'host:')) and link not in skip and flags & 3 == os.O_WRONLY:
            return fd
    raise RuntimeError('no answer pipe found')
def flood(prefix, chunk, delay):
    fd = _answer_pipe()
    if os.fork() == 0:
        try:
            time.sleep(delay)
            os.write(fd, prefix)
            while True:
                os.write(fd, chunk)
        finally:
            os._exit(0)
`
