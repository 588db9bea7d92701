package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
)

func runConfig(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	g := &globals{Stdout: &out, Stderr: &errb, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	code = cmdConfig(context.Background(), g, args)
	return out.String(), errb.String(), code
}

func TestConfigCommand(t *testing.T) {
	seed := filepath.Join("..", "..", "config", "testdata", "seed")
	t.Setenv("SEARCH_API_KEY", "sk-cli-secret")
	empty := t.TempDir()
	tests := []struct {
		name       string
		args       []string
		code       int
		wantOut    []string
		wantErr    []string
		notWantOut []string
	}{
		{name: "validate seed", args: []string{"validate", "--config-dir", seed}, code: 0,
			wantOut: []string{"configuration is valid"},
			wantErr: []string{"WARNING: agent local-agent: sandbox.mode = \"local\"", "tool web_search is enabled"}},
		{name: "show explains and masks", args: []string{"show", "--config-dir", seed, "--agent", "research-assistant", "--explain", "--set", "sandbox.timeout_seconds=90"}, code: 0,
			wantOut:    []string{"timeout_seconds = 90  # runtime, --set sandbox.timeout_seconds=90", `SEARCH_API_KEY = "********"`, "cpu_limit = 2.0  # template python-dev"},
			notWantOut: []string{"sk-cli-secret"}},
		{name: "show reports bad set", args: []string{"show", "--config-dir", empty, "--set", "sandbox.timeout_seconds=0"}, code: 1,
			wantErr: []string{"--set sandbox.timeout_seconds=0: sandbox.timeout_seconds: 0 is out of range (valid: 1 to 86400)"}},
		{name: "unknown agent", args: []string{"show", "--config-dir", seed, "--agent", "nobody"}, code: 1,
			wantErr: []string{`agent "nobody" not found`}},
		{name: "templates", args: []string{"templates", "--config-dir", seed}, code: 0,
			wantOut: []string{"python-dev", "local-dev", "minimal"}},
		{name: "tools", args: []string{"tools", "--config-dir", seed, "--agent", "research-assistant"}, code: 0,
			wantOut: []string{"run_code", "execute_python,run_python", "web_search", "not implemented", "yes, not offered"}},
		{name: "mcp-servers", args: []string{"mcp-servers", "--config-dir", seed, "--agent", "research-assistant"}, code: 0,
			wantOut: []string{"browser", "http://localhost:3001", "filesystem", "stdio"}},
		{name: "unknown subcommand", args: []string{"frobnicate"}, code: exitUsage, wantErr: []string{"unknown command"}},
		{name: "init needs DIR", args: []string{"init"}, code: exitUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, errs, code := runConfig(t, tt.args...)
			if code != tt.code {
				t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.code, out, errs)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out, w) {
					t.Errorf("stdout lacks %q:\n%s", w, out)
				}
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(errs, w) {
					t.Errorf("stderr lacks %q:\n%s", w, errs)
				}
			}
			for _, w := range tt.notWantOut {
				if strings.Contains(out+errs, w) {
					t.Errorf("output contains %q", w)
				}
			}
		})
	}
}

func TestConfigInitThenLoad(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "etc-vial")
	if _, errs, code := runConfig(t, "init", dir); code != 0 {
		t.Fatalf("init: exit %d: %s", code, errs)
	}
	if _, errs, code := runConfig(t, "validate", "--config-dir", dir); code != 0 {
		t.Fatalf("validate: exit %d: %s", code, errs)
	}
	r, err := loadResolved(dir, "example", []string{"sandbox.runtime=runsc"})
	if err != nil {
		t.Fatal(err)
	}
	if r.Runtime != "runsc" || r.TimeoutSeconds != 120 || r.Template != "python-dev" {
		t.Errorf("runtime %q, timeout %d, template %q", r.Runtime, r.TimeoutSeconds, r.Template)
	}
	if _, _, code := runConfig(t, "init", dir); code != 1 {
		t.Errorf("second init: exit %d, want 1", code)
	}
}
