package mcp

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"strings"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/vial-run/vial/internal/human"
	"github.com/vial-run/vial/service"
)

// toolTable lists every tool the package implements, in the order tools/list
// shows them.
var toolTable = []toolDef{
	{name: "run_code", build: buildRunCode, handle: (*Server).handleRunCode},
	{name: "run_shell", build: buildRunShell, handle: (*Server).handleRunShell},
	{name: "execute_python", build: buildExecutePython, handle: (*Server).handleExecutePython},
	{name: "create_context", build: buildCreateContext, handle: (*Server).handleCreateContext},
	{name: "list_contexts", build: buildListContexts, handle: (*Server).handleListContexts},
	{name: "stop_context", build: buildStopContext, handle: (*Server).handleStopContext},
	{name: "read_file", build: buildReadFile, handle: (*Server).handleReadFile},
	{name: "write_file", build: buildWriteFile, handle: (*Server).handleWriteFile},
	{name: "list_directory", build: buildListDirectory, handle: (*Server).handleListDirectory},
	{name: "search_files", build: buildSearchFiles, handle: (*Server).handleSearchFiles},
	{name: "delete_file", build: buildDeleteFile, handle: (*Server).handleDeleteFile},
}

// hints are a tool's annotations.
type hints struct {
	title                                   string
	readOnly, destructive, idempotent, open bool
}

// newTool assembles a tool from its parts. Schemas are written as JSON
// Schema documents (draft 2020-12 subset) so what the model sees is exactly
// what the handler's strict decoder accepts.
func newTool(name, description string, input, output map[string]any, h hints) mcpgo.Tool {
	t := mcpgo.Tool{
		Name:           name,
		Title:          h.title,
		Description:    description,
		RawInputSchema: mustJSON(input),
		Annotations: mcpgo.ToolAnnotation{
			Title:           h.title,
			ReadOnlyHint:    &h.readOnly,
			DestructiveHint: &h.destructive,
			IdempotentHint:  &h.idempotent,
			OpenWorldHint:   &h.open,
		},
	}
	if h.readOnly {
		// destructiveHint is meaningful only when readOnlyHint is false.
		t.Annotations.DestructiveHint = nil
	}
	if output != nil {
		t.RawOutputSchema = mustJSON(output)
	}
	return t
}

// object is a JSON Schema object with the given properties that rejects
// unknown ones.
func object(props map[string]any, required ...string) map[string]any {
	o := map[string]any{
		"type":                 "object",
		"properties":           props,
		"additionalProperties": false,
	}
	if len(required) > 0 {
		o["required"] = required
	}
	return o
}

func str(desc string) map[string]any { return map[string]any{"type": "string", "description": desc} }

func (s *Server) timeoutProp(def time.Duration) map[string]any {
	return map[string]any{
		"type":             "number",
		"exclusiveMinimum": 0,
		"description": fmt.Sprintf("Time limit in seconds (default %s, at most %s; larger values are lowered to %s). When it expires the code is interrupted (KeyboardInterrupt in Python, SIGINT in bash) and the context normally survives.",
			human.Duration(def), human.Duration(s.limits.MaxTimeout), human.Duration(s.limits.MaxTimeout)),
	}
}

func contextIDProp(what string) map[string]any {
	return str("Id of a context from create_context or list_contexts. Omit to use " + what + ".")
}

var languageProp = map[string]any{
	"type":        "string",
	"enum":        []string{"python", "javascript", "bash"},
	"description": "Interpreter: python (Python 3), javascript (Node.js) or bash.",
}

// execOutputSchema describes the structured content of run_code,
// run_shell and execute_python results (see execView).
var execOutputSchema = object(map[string]any{
	"language":          str("Language the code ran in."),
	"context_id":        str("Context the code ran in, when one was named."),
	"stdout":            str("Standard output (invalid UTF-8 replaced by U+FFFD)."),
	"stderr":            str("Standard error."),
	"stdout_truncated":  map[string]any{"type": "boolean"},
	"stderr_truncated":  map[string]any{"type": "boolean"},
	"value":             map[string]any{"type": []string{"string", "null"}, "description": "repr of the trailing expression, as a notebook shows it; null when there is none."},
	"error":             map[string]any{"anyOf": []any{map[string]any{"type": "null"}, object(map[string]any{"name": str("Exception or error name."), "message": str("Its message."), "traceback": str("Traceback.")}, "name", "message", "traceback")}},
	"exit_status":       map[string]any{"type": "integer"},
	"timed_out":         map[string]any{"type": "boolean"},
	"oom_killed":        map[string]any{"type": "boolean"},
	"dead":              map[string]any{"type": "boolean", "description": "The context is gone after this call; its state is lost."},
	"duration_ms":       map[string]any{"type": "number"},
	"cpu_time_ms":       map[string]any{"type": "number"},
	"peak_memory_bytes": map[string]any{"type": "integer", "minimum": 0},
	"timeout_ms":        map[string]any{"type": "number", "description": "The time limit that applied."},
	"images":            map[string]any{"type": "integer", "minimum": 0, "description": "Number of image content blocks in the result."},
}, "language", "stdout", "stderr", "stdout_truncated", "stderr_truncated", "value", "error", "exit_status",
	"timed_out", "oom_killed", "dead", "duration_ms", "cpu_time_ms", "peak_memory_bytes", "timeout_ms", "images")

const resultDoc = ` The result starts with a status line (ok, error, exit status, TIMED OUT, OUT OF MEMORY, context died), then stdout, stderr, the value of a trailing expression and the error with its traceback; figures (e.g. matplotlib) come back as PNG images. A failing program is a normal result, not a tool error: read the status line.`

func buildRunCode(s *Server) mcpgo.Tool {
	return newTool("run_code",
		"Run code in a persistent, sandboxed interpreter session (a context) and return its output. State persists between calls in the same context: variables, imports, functions, the working directory and files in /workspace, as in a notebook. Without context_id the code runs in the default context of the language, created on first use. No network access unless the operator enabled it."+resultDoc,
		object(map[string]any{
			"code":       str("Source code to run. In python and javascript the value of a trailing expression is returned, like a notebook cell."),
			"language":   languageProp,
			"context_id": contextIDProp("the default context of the language"),
			"timeout":    s.timeoutProp(s.limits.DefaultTimeout),
		}, "code"),
		execOutputSchema,
		hints{title: "Run code", destructive: true, open: s.openWorld})
}

func buildRunShell(s *Server) mcpgo.Tool {
	return newTool("run_shell",
		"Run a shell command (bash) in a persistent, sandboxed shell session. The working directory, environment variables and files persist between calls; the default shell context starts in /workspace. Pipes, redirection and multi-line scripts work. The exit status of the command is reported."+resultDoc,
		object(map[string]any{
			"command":    str("Shell command or script to run with bash."),
			"context_id": contextIDProp("the default bash context"),
			"timeout":    s.timeoutProp(s.limits.DefaultTimeout),
		}, "command"),
		execOutputSchema,
		hints{title: "Run shell command", destructive: true, open: s.openWorld})
}

func buildExecutePython(s *Server) mcpgo.Tool {
	return newTool("execute_python",
		"Run a self-contained Python 3 script in a fresh, throw-away sandbox that is removed afterwards: nothing persists and no context is used. Prefer run_code when you want to keep state between calls."+resultDoc,
		object(map[string]any{
			"code":    str("Python source to run."),
			"timeout": s.timeoutProp(s.limits.DefaultTimeout),
		}, "code"),
		execOutputSchema,
		hints{title: "Execute Python once", open: s.openWorld})
}

func buildCreateContext(s *Server) mcpgo.Tool {
	return newTool("create_context",
		"Create a new, isolated context: a persistent interpreter session (python, javascript or bash) in its own sandbox with a private /workspace. Returns its context_id; pass it to run_code, run_shell and the file tools. Contexts use resources: stop_context when done. The number of contexts is limited.",
		object(map[string]any{
			"language":    languageProp,
			"name":        str("Optional label to recognise the context in list_contexts."),
			"environment": str("Optional execution environment configured by the operator (e.g. an image with extra packages). Omit for the default."),
		}, "language"),
		object(map[string]any{
			"context_id":  str("Id of the new context."),
			"language":    str("Its language."),
			"name":        str("Its label."),
			"environment": str("Its environment."),
		}, "context_id", "language"),
		hints{title: "Create context"})
}

func buildListContexts(s *Server) mcpgo.Tool {
	return newTool("list_contexts",
		"List the live contexts: id, language, name, environment, whether it is a default context, when it was created and last used.",
		object(map[string]any{}),
		object(map[string]any{"contexts": map[string]any{"type": "array", "items": contextInfoSchema}}, "contexts"),
		hints{title: "List contexts", readOnly: true, idempotent: true})
}

var contextInfoSchema = object(map[string]any{
	"context_id":   str(""),
	"language":     str(""),
	"name":         str(""),
	"environment":  str(""),
	"default":      map[string]any{"type": "boolean"},
	"dead":         map[string]any{"type": "boolean"},
	"created_at":   str("RFC 3339 time."),
	"last_used_at": str("RFC 3339 time; empty if never used."),
}, "context_id", "language", "default", "dead", "created_at")

func buildStopContext(s *Server) mcpgo.Tool {
	return newTool("stop_context",
		"Stop a context and delete its sandbox, interpreter state and /workspace files. This cannot be undone.",
		object(map[string]any{"context_id": str("Id of the context to stop.")}, "context_id"),
		nil,
		hints{title: "Stop context", destructive: true, idempotent: true})
}

type runCodeArgs struct {
	Code      string   `json:"code"`
	Language  string   `json:"language"`
	ContextID string   `json:"context_id"`
	Timeout   *float64 `json:"timeout"`
}

func (s *Server) handleRunCode(ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	var a runCodeArgs
	if err := decodeArgs(c.req, &a); err != nil {
		return nil, err
	}
	c.note(slog.Int("code_bytes", len(a.Code)), slog.String("context_id", a.ContextID))
	if err := checkContextID(a.ContextID); err != nil {
		return nil, err
	}
	var lang service.Language
	if a.Language != "" {
		l, err := parseLanguage(a.Language)
		if err != nil {
			return nil, err
		}
		lang = l
	}
	d, err := timeout(a.Timeout)
	if err != nil {
		return nil, err
	}
	return s.execute(ctx, c, c.core().RunCode, service.RunRequest{Tool: "run_code", ContextID: a.ContextID, Language: lang, Code: a.Code, Timeout: d})
}

type runShellArgs struct {
	Command   string   `json:"command"`
	ContextID string   `json:"context_id"`
	Timeout   *float64 `json:"timeout"`
}

func (s *Server) handleRunShell(ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	var a runShellArgs
	if err := decodeArgs(c.req, &a); err != nil {
		return nil, err
	}
	c.note(slog.Int("code_bytes", len(a.Command)), slog.String("context_id", a.ContextID), slog.String("language", "bash"))
	if err := checkContextID(a.ContextID); err != nil {
		return nil, err
	}
	d, err := timeout(a.Timeout)
	if err != nil {
		return nil, err
	}
	return s.execute(ctx, c, c.core().RunCode, service.RunRequest{Tool: "run_shell", ContextID: a.ContextID, Language: service.Bash, Code: a.Command, Timeout: d})
}

type executePythonArgs struct {
	Code    string   `json:"code"`
	Timeout *float64 `json:"timeout"`
}

func (s *Server) handleExecutePython(ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	var a executePythonArgs
	if err := decodeArgs(c.req, &a); err != nil {
		return nil, err
	}
	c.note(slog.Int("code_bytes", len(a.Code)), slog.String("language", "python"))
	d, err := timeout(a.Timeout)
	if err != nil {
		return nil, err
	}
	return s.execute(ctx, c, c.core().RunOnce, service.RunRequest{Tool: "execute_python", Language: service.Python, Code: a.Code, Timeout: d})
}

// execute runs one call through the service, with progress notifications
// once the service has decided the time limit, and renders it.
func (s *Server) execute(ctx context.Context, c *call, run func(context.Context, service.RunRequest) (service.RunResult, error), r service.RunRequest) (*mcpgo.CallToolResult, error) {
	stop := func() {}
	r.OnStart = func(limit time.Duration) { stop = s.startProgress(ctx, c.req, limit) }
	res, err := run(ctx, r)
	stop()
	if res.ContextID != "" {
		c.note(slog.String("context_id", res.ContextID))
	}
	if err != nil {
		return nil, err
	}
	switch {
	case res.OOMKilled:
		c.outcome = "oom_killed"
	case res.TimedOut:
		c.outcome = "timed_out"
	case res.Dead:
		c.outcome = "dead"
	case res.Error != nil || res.ExitStatus != 0:
		c.outcome = "program_error"
	}
	ctxID := r.ContextID
	if ctxID == "" && r.Tool != "execute_python" {
		ctxID = res.ContextID
	}
	return s.renderExec(res, ctxID), nil
}

// execView is the structured content of an exec result.
type execView struct {
	Language        string     `json:"language"`
	ContextID       string     `json:"context_id,omitempty"`
	Stdout          string     `json:"stdout"`
	Stderr          string     `json:"stderr"`
	StdoutTruncated bool       `json:"stdout_truncated"`
	StderrTruncated bool       `json:"stderr_truncated"`
	Value           *string    `json:"value"`
	Error           *errorView `json:"error"`
	ExitStatus      int        `json:"exit_status"`
	TimedOut        bool       `json:"timed_out"`
	OOMKilled       bool       `json:"oom_killed"`
	Dead            bool       `json:"dead"`
	DurationMS      float64    `json:"duration_ms"`
	CPUTimeMS       float64    `json:"cpu_time_ms"`
	PeakMemoryBytes uint64     `json:"peak_memory_bytes"`
	TimeoutMS       float64    `json:"timeout_ms"`
	Images          int        `json:"images"`
}

type errorView struct {
	Name      string `json:"name"`
	Message   string `json:"message"`
	Traceback string `json:"traceback"`
}

// maxImages bounds the image blocks of one result.
const maxImages = 16

// renderExec turns a result into text, images and structured content
// within the response budget: images first take what they need of half
// the budget, the texts (sent twice: as text and as structured content)
// share the rest, and whatever had to be cut or left out is said in the
// text, where the model reads it.
func (s *Server) renderExec(res service.RunResult, contextID string) *mcpgo.CallToolResult {
	r := res.ExecResult
	v := execView{
		Language:        string(res.Language),
		ContextID:       contextID,
		StdoutTruncated: r.StdoutTruncated,
		StderrTruncated: r.StderrTruncated,
		ExitStatus:      r.ExitStatus,
		TimedOut:        r.TimedOut,
		OOMKilled:       r.OOMKilled,
		Dead:            r.Dead,
		DurationMS:      ms(r.Duration),
		CPUTimeMS:       ms(r.CPUTime),
		PeakMemoryBytes: r.PeakMemory,
		TimeoutMS:       ms(res.Timeout),
	}
	var images []mcpgo.Content
	var notes []string
	imageBudget := s.budget / 2
	dropped, droppedBytes := 0, 0
	for _, img := range r.Images {
		if !strings.HasPrefix(img.MIMEType, "image/") || len(img.Data) == 0 {
			continue
		}
		cost := base64.StdEncoding.EncodedLen(len(img.Data)) + 64
		if len(images) == maxImages || cost > imageBudget {
			dropped++
			droppedBytes += len(img.Data)
			continue
		}
		imageBudget -= cost
		images = append(images, mcpgo.NewImageContent(base64.StdEncoding.EncodeToString(img.Data), img.MIMEType))
	}
	v.Images = len(images)
	dropped += r.ImagesOmitted // left out already by the context
	if dropped > 0 {
		notes = append(notes, fmt.Sprintf("[%d image(s) left out: at most %d images and %s of images per call; save figures to /workspace and read them with read_file if you need them]",
			dropped, maxImages, human.Bytes(uint64(s.budget/2))))
	}

	// The texts, cut to fit what is left.
	texts := []*string{new(string), new(string), new(string), new(string), new(string), new(string)}
	*texts[0], *texts[1] = human.Valid(r.Stdout), human.Valid(r.Stderr)
	names := []string{"stdout", "stderr", "value", "error name", "error message", "traceback"}
	if r.HasValue {
		*texts[2] = human.Valid(r.Value)
	}
	if r.Error != nil {
		*texts[3], *texts[4], *texts[5] = human.Valid(r.Error.Name), human.Valid(r.Error.Message), human.Valid(r.Error.Traceback)
	}
	textBudget := (s.budget - (s.budget/2 - imageBudget) - 16<<10) / 2
	if cut := fitTexts(texts, textBudget); len(cut) > 0 {
		var what []string
		for _, i := range cut {
			what = append(what, names[i])
		}
		notes = append(notes, fmt.Sprintf("[%s cut to fit the %s response limit: write large output to a file in /workspace and read it in pages with read_file]",
			strings.Join(what, ", "), human.Bytes(uint64(s.budget))))
		for _, i := range cut {
			switch i {
			case 0:
				v.StdoutTruncated = true
			case 1:
				v.StderrTruncated = true
			}
		}
	}
	v.Stdout, v.Stderr = *texts[0], *texts[1]
	if r.HasValue {
		v.Value = texts[2]
	}
	if r.Error != nil {
		v.Error = &errorView{Name: *texts[3], Message: *texts[4], Traceback: *texts[5]}
	}

	var b strings.Builder
	b.WriteString(statusLine(r, v, res.Timeout))
	b.WriteString("\n")
	for _, n := range res.Notices {
		b.WriteString(n)
		b.WriteString("\n")
	}
	if res.Clamped {
		fmt.Fprintf(&b, "(the requested timeout was above the %s ceiling and was lowered to it)\n", human.Duration(res.Timeout))
	}
	section := func(name, body string, truncated bool) {
		if body == "" && !truncated {
			return
		}
		fmt.Fprintf(&b, "--- %s ---\n%s", name, body)
		if !strings.HasSuffix(body, "\n") {
			b.WriteString("\n")
		}
		if truncated {
			fmt.Fprintf(&b, "[%s truncated: the output limit was reached and the rest was dropped]\n", name)
		}
	}
	section("stdout", v.Stdout, v.StdoutTruncated)
	section("stderr", v.Stderr, v.StderrTruncated)
	if v.Value != nil {
		section("value", *v.Value, false)
	}
	if v.Error != nil {
		body := v.Error.Traceback
		if body == "" {
			body = v.Error.Name + ": " + v.Error.Message
		}
		section("error", body, false)
	}
	if v.Stdout == "" && v.Stderr == "" && v.Value == nil && v.Error == nil && !v.StdoutTruncated && !v.StderrTruncated {
		b.WriteString("(no output)\n")
	}
	if len(images) > 0 {
		fmt.Fprintf(&b, "[%d image(s) attached]\n", len(images))
	}
	for _, n := range notes {
		b.WriteString(n)
		b.WriteString("\n")
	}
	content := append([]mcpgo.Content{mcpgo.NewTextContent(strings.TrimRight(b.String(), "\n"))}, images...)
	return &mcpgo.CallToolResult{Content: content, StructuredContent: v}
}

func statusLine(r service.ExecResult, v execView, timeout time.Duration) string {
	var st string
	switch {
	case r.OOMKilled:
		st = "OUT OF MEMORY: the code exceeded the memory limit and was killed"
		if r.Dead {
			st += "; the context is gone and its state is lost (use create_context, or call again without context_id for a fresh default context)"
		}
	case r.TimedOut && r.Busy:
		st = fmt.Sprintf("TIMED OUT after %s: the code was interrupted, but something it started (a thread or a background process) kept using CPU, so the context was stopped and its state is lost", human.Duration(timeout))
	case r.TimedOut && r.Dead:
		st = fmt.Sprintf("TIMED OUT after %s: the code did not stop when interrupted, so the context was killed and its state is lost", human.Duration(timeout))
	case r.TimedOut:
		st = fmt.Sprintf("TIMED OUT after %s: the code was interrupted; the context is still usable", human.Duration(timeout))
	case r.Dead:
		st = "CONTEXT DIED: the interpreter exited or crashed; its state is lost"
	case v.Error != nil:
		st = "error: " + v.Error.Name
		if v.Error.Message != "" {
			st += ": " + firstLine(v.Error.Message)
		}
	case r.ExitStatus != 0:
		st = fmt.Sprintf("exited with status %d", r.ExitStatus)
	default:
		st = "ok"
	}
	m := fmt.Sprintf("status: %s · %s", st, human.Duration(r.Duration))
	if r.CPUTime > 0 {
		m += " · cpu " + human.Duration(r.CPUTime)
	}
	if r.PeakMemory > 0 {
		m += " · peak memory " + human.Bytes(r.PeakMemory)
	}
	return m
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return human.Trunc(line, 200)
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

type createContextArgs struct {
	Language    string `json:"language"`
	Name        string `json:"name"`
	Environment string `json:"environment"`
}

func (s *Server) handleCreateContext(ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	var a createContextArgs
	if err := decodeArgs(c.req, &a); err != nil {
		return nil, err
	}
	if a.Language == "" {
		return nil, userErrorf("missing argument \"language\": use python, javascript or bash")
	}
	lang, err := parseLanguage(a.Language)
	if err != nil {
		return nil, err
	}
	c.note(slog.String("language", string(lang)), slog.String("environment", human.Trunc(a.Environment, 64)))
	info, err := c.core().CreateContext(ctx, service.CreateRequest{Language: lang, Name: a.Name, Environment: a.Environment})
	if err != nil {
		return nil, err
	}
	c.note(slog.String("context_id", info.ID))
	out := map[string]any{"context_id": info.ID, "language": string(info.Language)}
	text := fmt.Sprintf("created %s context %s", info.Language, info.ID)
	if info.Name != "" {
		out["name"] = human.Valid(info.Name)
		text += fmt.Sprintf(" (name %q)", human.Valid(info.Name))
	}
	if info.Environment != "" {
		out["environment"] = info.Environment
		text += ", environment " + info.Environment
	}
	text += ". Pass context_id=\"" + info.ID + "\" to run_code, run_shell (bash contexts) and the file tools; stop_context when done."
	return &mcpgo.CallToolResult{Content: []mcpgo.Content{mcpgo.NewTextContent(text)}, StructuredContent: out}, nil
}

type contextView struct {
	ID          string `json:"context_id"`
	Language    string `json:"language"`
	Name        string `json:"name,omitempty"`
	Environment string `json:"environment,omitempty"`
	Default     bool   `json:"default"`
	Dead        bool   `json:"dead"`
	Created     string `json:"created_at"`
	LastUsed    string `json:"last_used_at,omitempty"`
}

func (s *Server) handleListContexts(ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	var a struct{}
	if err := decodeArgs(c.req, &a); err != nil {
		return nil, err
	}
	list := c.core().ListContexts()
	views := make([]contextView, 0, len(list))
	var b strings.Builder
	if len(list) == 0 {
		b.WriteString("no live contexts (run_code and run_shell start a default context on first use)")
	} else {
		fmt.Fprintf(&b, "%d live context(s):\n", len(list))
	}
	for _, info := range list {
		v := contextView{
			ID:          info.ID,
			Language:    string(info.Language),
			Name:        human.Valid(info.Name),
			Environment: info.Environment,
			Default:     info.Default,
			Dead:        info.Dead,
			Created:     info.Created.UTC().Format(time.RFC3339),
		}
		if !info.LastUsed.IsZero() {
			v.LastUsed = info.LastUsed.UTC().Format(time.RFC3339)
		}
		views = append(views, v)
		fmt.Fprintf(&b, "- %s  %s", v.ID, v.Language)
		if v.Default {
			b.WriteString("  (default)")
		}
		if v.Dead {
			b.WriteString("  DEAD (its state is lost; stop_context removes it)")
		}
		if v.Name != "" {
			fmt.Fprintf(&b, "  name=%q", v.Name)
		}
		if v.Environment != "" {
			fmt.Fprintf(&b, "  environment=%s", v.Environment)
		}
		fmt.Fprintf(&b, "  created %s", v.Created)
		if v.LastUsed != "" {
			fmt.Fprintf(&b, ", last used %s", v.LastUsed)
		}
		b.WriteString("\n")
	}
	return &mcpgo.CallToolResult{
		Content:           []mcpgo.Content{mcpgo.NewTextContent(strings.TrimRight(b.String(), "\n"))},
		StructuredContent: map[string]any{"contexts": views},
	}, nil
}

type stopContextArgs struct {
	ContextID string `json:"context_id"`
}

func (s *Server) handleStopContext(ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	var a stopContextArgs
	if err := decodeArgs(c.req, &a); err != nil {
		return nil, err
	}
	if a.ContextID == "" {
		return nil, userErrorf("missing argument \"context_id\"")
	}
	if err := checkContextID(a.ContextID); err != nil {
		return nil, err
	}
	c.note(slog.String("context_id", a.ContextID))
	if err := c.core().StopContext(ctx, a.ContextID); err != nil {
		return nil, err
	}
	return mcpgo.NewToolResultText("stopped context " + a.ContextID + "; its sandbox and files are gone"), nil
}
