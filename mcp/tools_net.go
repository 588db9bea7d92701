package mcp

import (
	"context"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/vial-run/vial/internal/human"
	"github.com/vial-run/vial/service"
)

// The network tools of the seeds: http_request and fetch_url, which vial
// runs itself under the agent's allowlist, and install_package, which runs
// pip or npm in the session's sandbox through its proxy. They need the
// operator to open the network; they are not offered by default.
var networkTools = []string{"http_request", "fetch_url", "install_package"}

// NeedsNetwork reports whether tool reaches the network (and is of no use
// while the agent's network is closed).
func NeedsNetwork(tool string) bool { return slices.Contains(networkTools, tool) }

// DefaultTools are the tools offered when the operator names none: every
// tool but the network ones, which need a configuration that opens the
// network.
func DefaultTools() []string {
	return slices.DeleteFunc(ToolNames(), func(n string) bool { return slices.Contains(networkTools, n) })
}

func init() {
	toolTable = append(toolTable,
		toolDef{name: "http_request", build: buildHTTPRequest, handle: (*Server).handleHTTPRequest},
		toolDef{name: "fetch_url", build: buildFetchURL, handle: (*Server).handleFetchURL},
		toolDef{name: "install_package", build: buildInstallPackage, handle: (*Server).handleInstallPackage},
	)
}

func buildHTTPRequest(s *Server) mcpgo.Tool {
	return newTool("http_request",
		"Make an HTTP request from vial (not from a sandbox) to a host the operator allows. GET and HEAD usually run at once; other methods may need a person's approval. The response's status, headers and body (text, or base64 for binary) come back, the body cut at 1 MiB.",
		object(map[string]any{
			"method":  map[string]any{"type": "string", "enum": []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}, "description": "HTTP method (default GET)."},
			"url":     str("Absolute http:// or https:// URL."),
			"headers": map[string]any{"type": "object", "additionalProperties": map[string]any{"type": "string"}, "description": "Request headers."},
			"body":    str("Request body (text)."),
		}, "url"),
		nil,
		hints{title: "HTTP request", destructive: true, open: true})
}

func buildFetchURL(s *Server) mcpgo.Tool {
	return newTool("fetch_url",
		"Fetch a web page from a host the operator allows and return it as plain text (HTML is turned into text), cut at 256 KiB.",
		object(map[string]any{"url": str("Absolute http:// or https:// URL.")}, "url"),
		nil,
		hints{title: "Fetch URL", readOnly: true, idempotent: true, open: true})
}

func buildInstallPackage(s *Server) mcpgo.Tool {
	return newTool("install_package",
		"Install a package for the code of this session: pip (Python, the default) or npm (JavaScript), from the package index the operator allows. The default contexts find it at once (it goes to /workspace/.packages).",
		object(map[string]any{
			"name":    str("Package, optionally with a version: \"requests\", \"numpy==1.26.4\", \"@scope/pkg\"."),
			"manager": map[string]any{"type": "string", "enum": []string{"pip", "npm"}, "description": "pip (default) or npm."},
		}, "name"),
		execOutputSchema,
		hints{title: "Install package", destructive: true, open: true})
}

type httpRequestArgs struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"`
	Body    *string           `json:"body"`
}

func (s *Server) handleHTTPRequest(ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	var a httpRequestArgs
	if err := decodeArgs(c.req, &a); err != nil {
		return nil, err
	}
	r := service.HTTPRequest{Method: a.Method, URL: a.URL, Headers: a.Headers}
	if a.Body != nil {
		r.Body = []byte(*a.Body)
	}
	c.note(slog.String("method", a.Method), slog.String("url", human.Trunc(a.URL, 200)))
	resp, err := c.core().HTTPRequest(ctx, r)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "HTTP %d %s · %s · %s\n", resp.Status, http.StatusText(resp.Status), human.Trunc(resp.URL, 500), human.Duration(resp.Duration.Round(time.Millisecond)))
	b.WriteString("--- headers ---\n")
	for _, k := range slices.Sorted(func(yield func(string) bool) {
		for k := range resp.Header {
			if !yield(k) {
				return
			}
		}
	}) {
		fmt.Fprintf(&b, "%s: %s\n", k, human.Trunc(strings.Join(resp.Header[k], ", "), 500))
	}
	if len(resp.Body) > 0 {
		if utf8.Valid(resp.Body) {
			b.WriteString("--- body ---\n")
			b.WriteString(cutToCost(string(resp.Body), s.budget/2))
		} else {
			b.WriteString("--- body (base64: not UTF-8 text) ---\n")
			b.WriteString(base64.StdEncoding.EncodeToString(resp.Body[:min(len(resp.Body), s.budget/3)]))
		}
		if resp.Truncated {
			b.WriteString("\n[the body was cut: it was longer than the limit]")
		}
	}
	return mcpgo.NewToolResultText(strings.TrimRight(b.String(), "\n")), nil
}

func (s *Server) handleFetchURL(ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	var a struct {
		URL string `json:"url"`
	}
	if err := decodeArgs(c.req, &a); err != nil {
		return nil, err
	}
	c.note(slog.String("url", human.Trunc(a.URL, 200)))
	page, err := c.core().FetchURL(ctx, a.URL)
	if err != nil {
		return nil, err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%d · %s", page.Status, human.Trunc(page.URL, 500))
	if page.Title != "" {
		fmt.Fprintf(&b, " · %s", human.Trunc(page.Title, 200))
	}
	b.WriteString("\n\n")
	b.WriteString(cutToCost(human.Valid(page.Text), s.budget/2))
	if page.Truncated {
		b.WriteString("\n[cut: the page was longer than the limit]")
	}
	return mcpgo.NewToolResultText(b.String()), nil
}

func (s *Server) handleInstallPackage(ctx context.Context, c *call) (*mcpgo.CallToolResult, error) {
	var a struct {
		Name    string `json:"name"`
		Manager string `json:"manager"`
	}
	if err := decodeArgs(c.req, &a); err != nil {
		return nil, err
	}
	c.note(slog.String("package", human.Trunc(a.Name, 100)), slog.String("manager", a.Manager))
	res, err := c.core().InstallPackage(ctx, service.InstallRequest{Name: a.Name, Manager: a.Manager})
	if err != nil {
		return nil, err
	}
	return s.renderExec(res, ""), nil
}
