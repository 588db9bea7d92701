package runtime

import (
	"context"
	"strconv"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// BlockedImportsRules is the rule list the blocked-imports tests give the
// Python driver: modules (one the driver itself imports at start, time),
// a submodule, and a function.
const BlockedImportsRules = "subprocess,socket,time,xml.dom,os.system"

// BlockedImportSteps are calls and what each must produce under
// BlockedImportsRules: an error name (and text in its message), or a
// value. Exported for the sandbox tests.
var BlockedImportSteps = []struct {
	Code, ErrName, ErrText, Value string
}{
	{"import subprocess", "ImportError", "import of 'subprocess' is blocked by the operator's policy (blocked_imports); this is a guard in front of the sandbox, not the sandbox itself", ""},
	{"from subprocess import run", "ImportError", "'subprocess' is blocked", ""},
	{"import subprocess.foo", "ImportError", "'subprocess' is blocked", ""},
	{"import importlib; importlib.import_module('subprocess')", "ImportError", "'subprocess' is blocked", ""},
	// Past importlib's wrapper, straight into the import system: the
	// finder first on sys.meta_path refuses (subprocess is not loaded).
	{"import importlib._bootstrap as b; b._gcd_import('subprocess')", "ImportError", "'subprocess' is blocked", ""},
	{"__import__('socket')", "ImportError", "'socket' is blocked", ""},
	{"exec('import socket')", "ImportError", "'socket' is blocked", ""},
	// Loaded before any user code, by the driver: still refused.
	{"import time", "ImportError", "'time' is blocked", ""},
	{"from time import sleep", "ImportError", "'time' is blocked", ""},
	{"import xml.dom.minidom", "ImportError", "'xml.dom' is blocked", ""},
	{"from xml import dom", "ImportError", "'xml.dom' is blocked", ""},
	{"from os import system", "ImportError", "'os.system' is blocked", ""},
	{"import os; os.system('true')", "PermissionError", "use of 'os.system' is blocked by the operator's policy (blocked_imports); this is a guard", ""},
	// The same os module, whoever holds it.
	{"import posixpath; posixpath.os.system('true')", "PermissionError", "'os.system' is blocked", ""},
	// A module the user wrote is the user's code.
	{"import sys; sys.path.insert(0, '.'); open('evil.py', 'w').write('import subprocess\\n'); import evil", "ImportError", "'subprocess' is blocked", ""},
	// The installed Python's own imports go on: asyncio imports
	// subprocess and socket, datetime imports time.
	{"import asyncio, datetime, xml.etree.ElementTree, json; json.dumps([1])", "", "", "'[1]'"},
	{"print('still', 'working')", "", "", ""},
}

// CheckBlockedImports runs BlockedImportSteps on c.
func CheckBlockedImports(t *testing.T, c *Context) {
	t.Helper()
	for _, st := range BlockedImportSteps {
		res, err := c.Exec(t.Context(), ExecRequest{Code: st.Code})
		if err != nil {
			t.Fatalf("%q: %v", st.Code, err)
		}
		if st.ErrName == "" {
			if res.Error != nil || res.Value != st.Value {
				t.Errorf("%q: value %q, error %+v; want value %q", st.Code, res.Value, res.Error, st.Value)
			}
			continue
		}
		if res.Error == nil || res.Error.Name != st.ErrName || !strings.Contains(res.Error.Message, st.ErrText) {
			t.Errorf("%q: error %+v, want %s with %q", st.Code, res.Error, st.ErrName, st.ErrText)
		}
		if strings.Contains(res.Error.Traceback, "python.py") {
			t.Errorf("%q: the traceback shows the driver's frames:\n%s", st.Code, res.Error.Traceback)
		}
		if res.Dead {
			t.Fatalf("%q killed the context", st.Code)
		}
	}
}

func TestContextBlockedImports(t *testing.T) {
	t.Parallel()
	h := startHost(t, hostArgv(t, Python), "VIAL_BLOCKED_IMPORTS="+BlockedImportsRules)
	c, err := NewContext(context.Background(), h, ContextOptions{Language: Python, Workspace: h.cmd.Dir})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	CheckBlockedImports(t, c)
}

func TestBlockedImportsEnv(t *testing.T) {
	t.Parallel()
	got, err := BlockedImportsEnv([]string{"subprocess", "os.system", "_x.y1"})
	if err != nil || got != "VIAL_BLOCKED_IMPORTS=subprocess,os.system,_x.y1" {
		t.Errorf("got %q, %v", got, err)
	}
	if got, err := BlockedImportsEnv(nil); got != "" || err != nil {
		t.Errorf("no rules: %q, %v", got, err)
	}
	for _, bad := range []string{"", "os..system", "1os", "os.", "a,b", "os system", "é"} {
		if _, err := BlockedImportsEnv([]string{bad}); !errdefs.IsInvalidArgument(err) || !strings.Contains(err.Error(), strconv.Quote(bad)) {
			t.Errorf("%q: %v, want an invalid-argument error naming it", bad, err)
		}
	}
}

func TestDriverEnv(t *testing.T) {
	t.Parallel()
	got := DriverEnv(ContextOptions{OutputCap: 1000})
	want := []string{"VIAL_OUTPUT_CAP=1000", "VIAL_IMAGE_BYTES=" + strconv.Itoa(DefaultImageBytes)}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("got %q, want %q", got, want)
	}
}
