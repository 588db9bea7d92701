package runtime

import (
	"bytes"
	"io"
	"os"
	"testing"

	"golang.org/x/sys/unix"
)

// TestTryWriteNeverWaits: on a pipe with no reader taking anything,
// tryWrite writes what fits and returns; on a blocking descriptor it
// writes nothing.
func TestTryWriteNeverWaits(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	small := []byte("vial1 exec 1\\ncode 3\\n1+1\\nend\\n")
	if n, ok := tryWrite(w, small); !ok || n != len(small) {
		t.Fatalf("small request: wrote %d of %d, ok %v", n, len(small), ok)
	}
	big := bytes.Repeat([]byte("x"), 4<<20) // far more than a pipe holds
	n, ok := tryWrite(w, big)
	if !ok || n == 0 || n >= len(big) {
		t.Fatalf("big request: wrote %d of %d, ok %v; want a part", n, len(big), ok)
	}
	got := make([]byte, len(small))
	if _, err := io.ReadFull(r, got); err != nil || !bytes.Equal(got, small) {
		t.Errorf("read %q, %v", got, err)
	}

	// A blocking descriptor.
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	br, blockingW := os.NewFile(uintptr(fds[0]), "r"), os.NewFile(uintptr(fds[1]), "w")
	defer br.Close()
	defer blockingW.Close()
	if n, ok := tryWrite(blockingW, small); ok || n != 0 {
		t.Errorf("blocking descriptor: wrote %d, ok %v; want nothing", n, ok)
	}
	// Not a descriptor at all.
	if n, ok := tryWrite(&bytes.Buffer{}, small); ok || n != 0 {
		t.Errorf("buffer: wrote %d, ok %v", n, ok)
	}
}
