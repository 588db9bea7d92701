package main

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestLogHandler(t *testing.T) {
	for _, tc := range []struct {
		name      string
		level     slog.Level
		toolCalls bool
		want      []string // substrings that must appear
		absent    []string
	}{
		{name: "tool calls logged below the level", level: slog.LevelWarn, toolCalls: true,
			want: []string{`msg="tool call"`, "warned"}, absent: []string{"informed"}},
		{name: "tool calls off", level: slog.LevelDebug, toolCalls: false,
			want: []string{"informed", "warned"}, absent: []string{`msg="tool call"`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			h := newLogHandler(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}), tc.level, tc.toolCalls, []string{"sk-secret-123", "ab"})
			log := slog.New(h).With("agent", "sk-secret-123")
			log.Info(toolCallMsg, "tool", "run_code", "error", errors.New("bad key sk-secret-123"))
			log.Info("informed")
			log.Warn("warned", slog.Group("g", "k", "v=sk-secret-123"))
			out := buf.String()
			for _, w := range tc.want {
				if !strings.Contains(out, w) {
					t.Errorf("%q missing from:\n%s", w, out)
				}
			}
			for _, a := range append(tc.absent, "sk-secret-123") {
				if strings.Contains(out, a) {
					t.Errorf("%q present in:\n%s", a, out)
				}
			}
			if strings.Contains(out, "********") == false {
				t.Errorf("nothing masked:\n%s", out)
			}
			if strings.Contains(out, "*ab*") {
				t.Errorf("a two-character secret was masked")
			}
		})
	}
}
