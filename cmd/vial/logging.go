package main

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/vial-run/vial/config"
	"github.com/vial-run/vial/internal/mask"
)

// toolCallMsg is the message of the record the MCP server writes for every
// tool call (mcp.Server logs one per call: tool, duration, outcome).
const toolCallMsg = "tool call"

// applyLogging replaces g.Log with a logger built from the configuration's
// [logging]: its level (unless the operator chose one with --log-level or
// VIAL_LOG_LEVEL, which wins), its format, whether tool calls are logged,
// and masking of every secret value. It writes to g.Stderr: stdout is the
// protocol.
func applyLogging(g *globals, lg config.Logging, secrets []string) error {
	level := slog.LevelWarn
	name := g.LogLevel
	if !g.LogLevelSet && lg.Level != "" {
		name = lg.Level
	}
	if err := level.UnmarshalText([]byte(name)); err != nil {
		return fmt.Errorf("log level %q: want debug, info, warn or error", name)
	}
	// The inner handler lets everything through; logHandler decides.
	opts := &slog.HandlerOptions{Level: slog.LevelDebug}
	var inner slog.Handler = slog.NewTextHandler(g.Stderr, opts)
	if lg.Format == "json" {
		inner = slog.NewJSONHandler(g.Stderr, opts)
	}
	g.LogLevel = level.String()
	g.Log = slog.New(newLogHandler(inner, level, lg.LogToolCalls, secrets))
	return nil
}

// logHandler filters and masks records for vial's log.
//
// Tool-call records follow log_tool_calls, not the level: with it true
// every call is logged (at info, or warn for a failed call) even when the
// level is warn; with it false none is. Every other record follows the
// level. Secret values from the configuration (the agent's .env, secret
// variables, MCP API keys) are replaced by ******** in the message and in
// every string attribute, because a tool's error or a sandbox's argument
// may quote them and a log is read by more people than the config.
type logHandler struct {
	inner     slog.Handler
	level     slog.Level
	toolCalls bool
	mask      *mask.Masker // nil: no secrets
}

func newLogHandler(inner slog.Handler, level slog.Level, toolCalls bool, secrets []string) *logHandler {
	return &logHandler{inner: inner, level: level, toolCalls: toolCalls, mask: mask.New(secrets)}
}

func (h *logHandler) Enabled(_ context.Context, l slog.Level) bool {
	return l >= h.level || (h.toolCalls && l >= slog.LevelInfo)
}

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == toolCallMsg {
		if !h.toolCalls {
			return nil
		}
	} else if r.Level < h.level {
		return nil
	}
	if h.mask == nil {
		return h.inner.Handle(ctx, r)
	}
	out := slog.NewRecord(r.Time, r.Level, h.mask.Replace(r.Message), r.PC)
	r.Attrs(func(a slog.Attr) bool {
		out.AddAttrs(h.maskAttr(a))
		return true
	})
	return h.inner.Handle(ctx, out)
}

func (h *logHandler) maskAttr(a slog.Attr) slog.Attr {
	if h.mask == nil {
		return a
	}
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.mask.Replace(v.String()))
	case slog.KindGroup:
		g := v.Group()
		out := make([]any, 0, len(g))
		for _, ga := range g {
			out = append(out, h.maskAttr(ga))
		}
		return slog.Group(a.Key, out...)
	case slog.KindAny:
		// Errors, slices, structs: mask their printed form.
		return slog.String(a.Key, h.mask.Replace(fmt.Sprint(v.Any())))
	}
	return slog.Attr{Key: a.Key, Value: v}
}

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	masked := make([]slog.Attr, len(attrs))
	for i, a := range attrs {
		masked[i] = h.maskAttr(a)
	}
	c := *h
	c.inner = h.inner.WithAttrs(masked)
	return &c
}

func (h *logHandler) WithGroup(name string) slog.Handler {
	c := *h
	c.inner = h.inner.WithGroup(name)
	return &c
}
