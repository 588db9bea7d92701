package policy

import (
	"slices"
	"strings"
	"testing"
)

func TestBlockedImport(t *testing.T) {
	blocked := []string{"subprocess", "os.system", "ctypes"}
	tests := []struct {
		name string
		code string
		want string // the matching reference; "" for none
	}{
		{"import", "import subprocess", "subprocess"},
		{"indented", "if True:\n    import subprocess", "subprocess"},
		{"after semicolon", "x = 1; import subprocess", "subprocess"},
		{"one-line if", "if x: import subprocess", "subprocess"},
		{"import list", "import sys, subprocess", "subprocess"},
		{"import as", "import subprocess as sp", "subprocess"},
		{"submodule", "import ctypes.util", "ctypes.util"},
		{"submodule as", "import ctypes.util as u", "ctypes.util"},
		{"from import", "from subprocess import run", "subprocess"},
		{"from dotted import", "from ctypes.util import find_library", "ctypes.util"},
		{"from import attr", "from os import system", "os.system"},
		{"from import attr as", "from os import path, system as s", "os.system"},
		{"from import parenthesised", "from os import (\n    path,\n    system,\n)", "os.system"},
		{"from import star", "from os import *", "os.*"},
		{"continuation", "import \\\n    subprocess", "subprocess"},
		{"os.system call", "import os\nos.system('id')", "os.system"},
		{"os.system from an earlier cell", "os.system('id')", "os.system"},
		{"alias", "import os as o\no.system('id')", "os.system"},
		{"getattr", "import os\ngetattr(os, 'system')('id')", "os.system"},
		{"getattr alias", "import os as o\ngetattr(o, 'system')('id')", "os.system"},
		{"__import__", `__import__("subprocess")`, "subprocess"},
		{"__import__ single quotes", `m = __import__('subprocess')`, "subprocess"},
		{"__import__ attr", `__import__("os").system("id")`, "os.system"},
		{"__import__ bound", "o = __import__('os')\no.system('id')", "os.system"},
		{"__import__ escaped", `__import__("\x73ubprocess")`, "subprocess"},
		{"__import__ octal", `__import__("\163ubprocess")`, "subprocess"},
		{"__import__ unicode escape", `__import__("\u0073ubprocess")`, "subprocess"},
		{"__import__ adjacent literals", `__import__("sub" 'process')`, "subprocess"},
		{"__import__ spaces", `__import__ ( "subprocess" )`, "subprocess"},
		{"importlib", "import importlib\nimportlib.import_module('subprocess')", "subprocess"},
		{"import_module", "from importlib import import_module\nimport_module('subprocess')", "subprocess"},
		{"import_module bound", "import importlib\nm = importlib.import_module('os')\nm.system('x')", "os.system"},
		{"f-string expression", `print(f"{__import__('subprocess')}")`, "subprocess"},
		{"f-string same quotes (3.12)", `print(f"{__import__("subprocess")}")`, "subprocess"},
		{"f-string nested field", `f"{x:{__import__('subprocess')}}"`, "subprocess"},
		{"exec string", `exec("import subprocess")`, "subprocess"},
		{"exec triple-quoted", "exec('''\nimport subprocess\n''')", "subprocess"},
		{"eval string", `eval("__import__('subprocess')")`, "subprocess"},
		{"fullwidth identifier", "import ｓｕｂｐｒｏｃｅｓｓ", "subprocess"},
		{"mathematical identifier", "import 𝐬𝐮𝐛𝐩𝐫𝐨𝐜𝐞𝐬𝐬", "subprocess"},
		{"long s", "import ſubprocess", "subprocess"},
		// Not blocked.
		{"import os", "import os\nprint(os.getcwd())", ""},
		{"os.path", "import os\nos.path.join('a')", ""},
		{"comment", "# import subprocess\nx = 1", ""},
		{"string", `print("import subprocess")`, ""},
		{"docstring", "'''\nimport subprocess\n'''\nx = 1", ""},
		{"similar name", "import subprocess2", ""},
		{"similar prefix", "import subproc", ""},
		{"attribute of another object", "obj.subprocess_count", ""},
		{"yield from", "def g():\n    yield from subprocesses\nimport os", ""},
		{"raise from", "raise X from subprocess_error", ""},
		{"relative import", "from . import subprocess", ""},
		{"computed name", `__import__("sub" + "process")`, ""},
		{"empty", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, ref, found := BlockedImport(blocked, tt.code)
			if ref != tt.want || found != (tt.want != "") {
				t.Errorf("BlockedImport(%q) = %q, %v; want %q (refs %q)", tt.code, ref, found, tt.want, PythonImports(tt.code))
			}
		})
	}
}

func TestBlockedImportEntries(t *testing.T) {
	for _, tt := range []struct {
		entry, code string
		want        bool
	}{
		{"os", "import os.path", true},
		{"os.path", "import os", false},
		{"os.system", "from os import *", true},
		{"os", "from os import *", true},
		{"os.system", "from os.path import *", false},
		{"  subprocess ", "import subprocess", true},
		{"", "import subprocess", false},
	} {
		_, _, got := BlockedImport([]string{tt.entry}, tt.code)
		if got != tt.want {
			t.Errorf("BlockedImport(%q, %q) = %v, want %v", tt.entry, tt.code, got, tt.want)
		}
	}
}

func TestPythonImports(t *testing.T) {
	code := `
import numpy as np, pandas
from matplotlib import pyplot as plt
from os.path import join
x = np.array([1, 2]).sum()
plt.plot(x)
`
	want := []string{"matplotlib", "matplotlib.pyplot", "matplotlib.pyplot.plot", "numpy", "numpy.array", "np.array", "os.path", "os.path.join", "pandas", "plt.plot"}
	slices.Sort(want)
	if got := PythonImports(code); !slices.Equal(got, want) {
		t.Errorf("PythonImports:\n got %q\nwant %q", got, want)
	}
}

// TestPythonImportsHostile: unterminated strings, deep f-string nesting and
// long inputs end, in time linear in the input.
func TestPythonImportsHostile(t *testing.T) {
	for _, code := range []string{
		`"unterminated`,
		`'''unterminated`,
		`f"{`,
		`f"{x`,
		`__import__(`,
		`from`,
		`import`,
		`from x import (`,
		strings.Repeat(`f"{`, 10000),
		strings.Repeat(`exec("`, 10000),
		strings.Repeat("a.", 100000) + "b",
		strings.Repeat("import a\n", 50000),
		"\xff\xfe import subprocess",
	} {
		PythonImports(code)
	}
	if _, _, ok := BlockedImport([]string{"subprocess"}, "\xff\xfe\nimport subprocess"); !ok {
		t.Error("invalid UTF-8 before an import hid it")
	}
}

// TestPythonImportsQuadratic: constructs that look ahead must not make the
// scan quadratic.
func TestPythonImportsQuadratic(t *testing.T) {
	for _, code := range []string{
		strings.Repeat(`__import__("a", `, 50000),
		strings.Repeat(`getattr(a, `, 50000),
		strings.Repeat(`from a import b, `, 50000),
		strings.Repeat(`import a.`, 50000),
	} {
		PythonImports(code)
	}
}
