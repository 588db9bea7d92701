package rootfs

import (
	"archive/tar"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// parseScript turns a fuzz input into archive entries, one per line:
//
//	f NAME [BODY]   regular file      d NAME   directory
//	l NAME TARGET   symlink           h NAME TARGET   hard link
//	c NAME          char device       x NAME MODE     file with octal mode
//
// Names, targets and bodies may hold anything but spaces and newlines, so
// the fuzzer spends its time on paths rather than on tar checksums.
func parseScript(s string) []ent {
	var out []ent
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		arg := ""
		if len(f) > 2 {
			arg = f[2]
		}
		switch f[0] {
		case "f":
			out = append(out, file(f[1], arg))
		case "d":
			out = append(out, dir(f[1]))
		case "l":
			out = append(out, symlink(f[1], arg))
		case "h":
			out = append(out, hardlink(f[1], arg))
		case "c":
			out = append(out, ent{name: f[1], typ: tar.TypeChar, mode: 0o666})
		case "x":
			var m int64
			for _, c := range arg {
				if c >= '0' && c <= '7' {
					m = m*8 + int64(c-'0')
				}
			}
			out = append(out, ent{name: f[1], body: "x", mode: m & 0o7777})
		}
	}
	return out
}

// FuzzUnpack checks Unpack's one promise on fuzzed archives: whatever the
// entries, nothing outside the target directory is created, changed or
// removed (the secret next to it keeps its content, mode and link count).
func FuzzUnpack(f *testing.F) {
	for _, seed := range []string{
		"f ../evil x",
		"l s ../outside\nf s/secret pwned",
		"l s /\nf s/outside/secret pwned\nh hl s/outside/secret",
		"l a b\nl b ../../..\nf a/outside/secret x",
		"h hl ../outside/secret",
		"l s ../outside/secret\nh hl s\nf hl pwned\nx s 4777",
		"d a\nl a/b ../../outside\nf a/b/.wh..wh..opq\nf a/b/.wh.secret",
		"l s ..\nf s/.wh.outside",
		"x su 6755\nc dev/null\nd ro\nf ro/x 1",
		"l .. /\nf ../outside/secret pwned",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, script string) {
		ents := parseScript(script)
		var buf bytes.Buffer
		tw := tar.NewWriter(&buf)
		for _, e := range ents {
			typ := e.typ
			if typ == 0 {
				typ = tar.TypeReg
			}
			hdr := &tar.Header{Typeflag: typ, Name: e.name, Linkname: e.link, Mode: e.mode}
			if typ == tar.TypeReg {
				hdr.Size = int64(len(e.body))
			}
			if tw.WriteHeader(hdr) != nil {
				return // not encodable: not an archive anyone can send
			}
			tw.Write([]byte(e.body))
		}
		tw.Close()
		base, root := sandboxDirs(t)
		before := outsideSnapshot(t, base, root)
		Unpack(t.Context(), &buf, root, UnpackOptions{Whiteouts: true, Limits: Limits{MaxEntries: 1000, MaxFileSize: 1 << 20}})
		checkNothingOutside(t, base, root, before)
	})
}

// FuzzUnpackRaw feeds raw bytes (seeded with testdata/hostile) to Unpack
// with the same property.
func FuzzUnpackRaw(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "hostile", "*.tar"))
	for _, p := range files {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		base, root := sandboxDirs(t)
		before := outsideSnapshot(t, base, root)
		Unpack(t.Context(), bytes.NewReader(data), root, UnpackOptions{Whiteouts: true, Limits: Limits{MaxEntries: 1000, MaxFileSize: 1 << 20, MaxTotalSize: 4 << 20}})
		checkNothingOutside(t, base, root, before)
	})
}
