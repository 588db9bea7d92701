package rootfs

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
)

// ent is one entry of a test archive.
type ent struct {
	name string
	typ  byte // tar.Type*; 0 means a regular file
	body string
	link string
	mode int64
	size int64 // header size when it must differ from len(body) (truncated archives)
}

func file(name, body string) ent { return ent{name: name, body: body, mode: 0o644} }
func dir(name string) ent        { return ent{name: name, typ: tar.TypeDir, mode: 0o755} }
func symlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeSymlink, link: target, mode: 0o777}
}
func hardlink(name, target string) ent {
	return ent{name: name, typ: tar.TypeLink, link: target, mode: 0o644}
}

// mkTar builds an uncompressed tar archive. Headers are written raw so
// hostile names survive (archive/tar does not sanitise on write).
func mkTar(t testing.TB, ents ...ent) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range ents {
		typ := e.typ
		if typ == 0 {
			typ = tar.TypeReg
		}
		size := int64(0)
		if typ == tar.TypeReg {
			size = int64(len(e.body))
			if e.size != 0 {
				size = e.size
			}
		}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		hdr := &tar.Header{Typeflag: typ, Name: e.name, Linkname: e.link, Mode: mode, Size: size,
			ModTime: time.Unix(1700000000, 0), Uid: 0, Gid: 0, Format: tar.FormatPAX}
		if typ == tar.TypeChar || typ == tar.TypeBlock {
			hdr.Devmajor, hdr.Devminor = 1, 3
		}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatalf("writing header %q: %v", e.name, err)
		}
		if typ == tar.TypeReg {
			if _, err := tw.Write([]byte(e.body)); err != nil && e.size == 0 {
				t.Fatalf("writing %q: %v", e.name, err)
			}
		}
	}
	if err := tw.Close(); err != nil && !strings.Contains(err.Error(), "missed writing") {
		t.Fatalf("closing tar: %v", err)
	}
	return buf.Bytes()
}

func gzipBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.Write(b)
	zw.Close()
	return buf.Bytes()
}

func zstdBytes(t testing.TB, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	if err != nil {
		t.Fatal(err)
	}
	return zw.EncodeAll(b, nil)
}

func writeFile(t testing.TB, p string, b []byte) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// baseRootfs is a tiny root filesystem for store tests.
func baseRootfs() []ent {
	return []ent{
		dir("./"), dir("usr/"), dir("usr/bin/"), symlink("bin", "usr/bin"),
		{name: "usr/bin/sh", body: "#!fake shell\n", mode: 0o755},
		dir("etc/"), file("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n"),
		file("etc/os-release", "ID=test\n"),
	}
}

// mkDockerSave builds a `docker save` archive holding the given layers.
func mkDockerSave(t testing.TB, repoTag string, env []string, layers ...[]byte) []byte {
	t.Helper()
	cfg, _ := json.Marshal(map[string]any{"config": map[string]any{"Env": env, "Cmd": []string{"sh"}}})
	cfgName := sha(cfg) + ".json"
	ents := []ent{file(cfgName, string(cfg))}
	var names []string
	for _, l := range layers {
		id := sha(l)
		ents = append(ents, dir(id+"/"), file(id+"/layer.tar", string(l)), file(id+"/VERSION", "1.0"))
		names = append(names, id+"/layer.tar")
	}
	m, _ := json.Marshal([]map[string]any{{"Config": cfgName, "RepoTags": []string{repoTag}, "Layers": names}})
	ents = append(ents, file("manifest.json", string(m)))
	return mkTar(t, ents...)
}

// mkOCILayout writes an OCI image layout into dir with the given
// (possibly compressed) layers and returns dir.
func mkOCILayout(t testing.TB, dir, refName string, env []string, layers ...[]byte) string {
	t.Helper()
	blob := func(b []byte) map[string]any {
		writeFile(t, filepath.Join(dir, "blobs", "sha256", sha(b)), b)
		return map[string]any{"digest": "sha256:" + sha(b), "size": len(b)}
	}
	cfg, _ := json.Marshal(map[string]any{"architecture": "amd64", "os": "linux", "config": map[string]any{"Env": env}})
	cd := blob(cfg)
	cd["mediaType"] = "application/vnd.oci.image.config.v1+json"
	var lds []map[string]any
	for _, l := range layers {
		d := blob(l)
		d["mediaType"] = "application/vnd.oci.image.layer.v1.tar"
		lds = append(lds, d)
	}
	man, _ := json.Marshal(map[string]any{"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json", "config": cd, "layers": lds})
	md := blob(man)
	md["mediaType"] = "application/vnd.oci.image.manifest.v1+json"
	md["annotations"] = map[string]string{"org.opencontainers.image.ref.name": refName}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{md}})
	writeFile(t, filepath.Join(dir, "index.json"), idx)
	writeFile(t, filepath.Join(dir, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`))
	return dir
}

// tarDir archives a directory (for OCI layouts shipped as one tar).
func tarDir(t testing.TB, dir string) []byte {
	t.Helper()
	var ents []ent
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		if d.IsDir() {
			ents = append(ents, ent{name: rel + "/", typ: tar.TypeDir, mode: 0o755})
			return nil
		}
		b, _ := os.ReadFile(p)
		ents = append(ents, file(rel, string(b)))
		return nil
	})
	return mkTar(t, ents...)
}

// snapshot records every path under dir with its type, mode, link count
// and content hash, to prove that something did not change.
func snapshot(t testing.TB, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		fi, err := d.Info()
		if err != nil {
			return nil
		}
		v := fi.Mode().String()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			v += " nlink=" + string(rune('0'+st.Nlink))
		}
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			v += " " + sha(b)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			l, _ := os.Readlink(p)
			v += " -> " + l
		}
		out[p] = v
		return nil
	})
	return out
}

// tree lists the paths under dir (relative, sorted), marking directories
// with a trailing slash and symlinks with their target.
func tree(t testing.TB, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		switch {
		case d.IsDir():
			rel += "/"
		case d.Type()&fs.ModeSymlink != 0:
			l, _ := os.Readlink(p)
			rel += " -> " + l
		}
		out = append(out, rel)
		return nil
	})
	sort.Strings(out)
	return out
}
