package policy

import (
	"strings"
	"testing"
)

func TestMatchPath(t *testing.T) {
	tests := []struct {
		pattern, path string
		want          bool
	}{
		// ** at any depth, zero included.
		{"**/.env", ".env", true},
		{"**/.env", "a/.env", true},
		{"**/.env", "a/b/c/.env", true},
		{"**/.env", ".env/inside", true}, // a blocked directory blocks its contents
		{"**/.env", "a.env", false},
		{"**/.env", ".env.local", false},
		{"**/.env", "env", false},
		{"**/.env", ".", false},
		// Cleaned paths.
		{"**/.env", "./.env", true},
		{"**/.env", "a/../.env", true},
		{"**/.env", "a//b/./.env", true},
		{"**/.env", "/workspace/.env", true},
		{"**/.env", "/workspace/a/../.env", true},
		{"**/.env", "/workspace/../workspace/.env", true},
		// A name without a slash matches at any depth.
		{".env", ".env", true},
		{".env", "x/y/.env", true},
		{"*.pem", "certs/server.pem", true},
		{"*.pem", "server.pem.txt", false},
		{"id_rsa*", "home/.ssh/id_rsa.pub", true},
		// Anchored patterns.
		{"secrets/*", "secrets/key", true},
		{"secrets/*", "secrets/sub/key", true}, // under the matched secrets/sub
		{"secrets/*", "x/secrets/key", false},
		{"secrets/*", "secrets", false},
		{"./config.json", "config.json", true},
		{"./config.json", "a/config.json", false},
		{"/workspace/config.json", "config.json", true},
		{"/workspace/config.json", "a/config.json", false},
		{"/workspace/data/", "data/x.csv", true},
		{"data/private", "data/private/x/y", true},
		{"data/private", "data/privateer", false},
		{"a/**/b", "a/b", true},
		{"a/**/b", "a/x/y/b", true},
		{"a/**/b", "a/x/y/c", false},
		{"a/**", "a", true},
		{"a/**", "a/x", true},
		{"**", "anything/at/all", true},
		{"/workspace", "x", true},
		{"/workspace/**", ".", true},
		{"src/?.go", "src/a.go", true},
		{"src/?.go", "src/ab.go", false},
		{"src/[ab].go", "src/b.go", true},
		{"*", ".hidden", true},
		// Host paths outside /workspace.
		{"/etc/shadow", "/etc/shadow", true},
		{"/etc/shadow", "/etc/../etc/shadow", true},
		{"/etc/shadow", "etc/shadow", false},
		{"/etc/shadow", "/workspace/etc/shadow", false},
		{"/etc", "/etc/passwd", true},
		{"**/.env", "/etc/.env", false}, // relative patterns name workspace files
		{"../secret", "../secret", false},
		{"../secret", "secret", false},
		// Malformed patterns fail closed.
		{"a/[b", "anything", true},
		{"", "x", true},
	}
	for _, tt := range tests {
		if got := MatchPath(tt.pattern, tt.path); got != tt.want {
			t.Errorf("MatchPath(%q, %q) = %v, want %v", tt.pattern, tt.path, got, tt.want)
		}
	}
}

func TestBlockedPath(t *testing.T) {
	pats := []string{"/etc/passwd", "  ", "**/.env", "secrets"}
	for p, want := range map[string]string{
		".env": "**/.env", "deep/secrets/k": "secrets", "/etc/passwd": "/etc/passwd", "main.go": "",
	} {
		got, ok := BlockedPath(pats, p)
		if got != want || ok != (want != "") {
			t.Errorf("BlockedPath(%q) = %q, %v; want %q", p, got, ok, want)
		}
	}
}

// TestMatchPathHostile: many ** against a deep path stays polynomial.
func TestMatchPathHostile(t *testing.T) {
	pat := strings.Repeat("**/", 200) + "x"
	p := strings.Repeat("a/", 5000) + "y"
	if MatchPath(pat, p) {
		t.Error("matched")
	}
}
