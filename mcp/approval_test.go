package mcp

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	sdk "github.com/modelcontextprotocol/go-sdk/mcp"

	"github.com/vial-run/vial/policy"
	"github.com/vial-run/vial/service"
)

// testRules is seed 001's kind of policy: write_file and delete_file need a
// person; .env is protected; chmod 777 and subprocess are blocked; reads
// are capped at 1k.
func testRules() *policy.Rules {
	r := &policy.Rules{
		Tools:               map[string]policy.ToolRules{},
		RequireConfirmation: policy.List("hitl.require_confirmation", "write_file"),
		AutoApprovePatterns: policy.List("hitl.auto_approve_patterns", "read_*"),
	}
	for _, n := range ToolNames() {
		r.Tools[n] = policy.ToolRules{Enabled: true}
	}
	r.Tools["read_file"] = policy.ToolRules{Enabled: true, MaxFileSize: 1024, BlockedPaths: []string{"**/.env"}}
	r.Tools["delete_file"] = policy.ToolRules{Enabled: true, Confirm: true}
	r.Tools["run_shell"] = policy.ToolRules{Enabled: true, BlockedCommands: []string{"chmod 777"}}
	r.Tools["run_code"] = policy.ToolRules{Enabled: true, BlockedImports: []string{"subprocess"}}
	return r
}

// elicitingClient connects the official Go SDK client over stdio, answering
// every approval with answer (nil: the client declares no elicitation).
func elicitingClient(t *testing.T, s *Server, version string, mrtr bool, answer func(*sdk.ElicitRequest) (*sdk.ElicitResult, error)) (*sdk.ClientSession, *atomic.Int32) {
	t.Helper()
	var asked atomic.Int32
	opts := &sdk.ClientOptions{}
	if !mrtr {
		opts.MultiRoundTrip = &sdk.MultiRoundTripOptions{Disabled: true}
	}
	if answer != nil {
		opts.ElicitationHandler = func(ctx context.Context, req *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
			asked.Add(1)
			return answer(req)
		}
	}
	r, w := serveOnPipes(t, s)
	client := sdk.NewClient(&sdk.Implementation{Name: "approver", Version: "1"}, opts)
	var copts *sdk.ClientSessionOptions
	if version != "" {
		copts = &sdk.ClientSessionOptions{ProtocolVersion: version}
	}
	cs, err := client.Connect(t.Context(), &sdk.IOTransport{Reader: r, Writer: w}, copts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cs.Close() })
	return cs, &asked
}

func yes(*sdk.ElicitRequest) (*sdk.ElicitResult, error) {
	return &sdk.ElicitResult{Action: "accept", Content: map[string]any{"approve": true}}, nil
}

func callSDK(t *testing.T, cs *sdk.ClientSession, tool string, args map[string]any) *sdk.CallToolResult {
	t.Helper()
	res, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: tool, Arguments: args})
	if err != nil {
		t.Fatalf("%s: %v", tool, err)
	}
	return res
}

// A person is asked before write_file, over both protocol eras, and only
// an explicit yes writes; the request shows what will be written.
func TestApprovalByElicitation(t *testing.T) {
	for _, era := range []struct{ name, version string }{{"2026-07-28 input_required", ""}, {"2025-11-25 elicitation/create", "2025-11-25"}} {
		t.Run(era.name, func(t *testing.T) {
			for _, tc := range []struct {
				name    string
				answer  func(*sdk.ElicitRequest) (*sdk.ElicitResult, error)
				written bool
				says    string
			}{
				{"accept", yes, true, "wrote"},
				{"accept without yes", func(*sdk.ElicitRequest) (*sdk.ElicitResult, error) {
					return &sdk.ElicitResult{Action: "accept", Content: map[string]any{"approve": false}}, nil
				}, false, "did not approve"},
				{"decline", func(*sdk.ElicitRequest) (*sdk.ElicitResult, error) { return &sdk.ElicitResult{Action: "decline"}, nil }, false, "declined"},
				{"cancel", func(*sdk.ElicitRequest) (*sdk.ElicitResult, error) { return &sdk.ElicitResult{Action: "cancel"}, nil }, false, "cancelled"},
			} {
				t.Run(tc.name, func(t *testing.T) {
					s, env, _ := newTestServer(t, Options{}, service.Options{Policy: testRules()})
					var shown string
					cs, asked := elicitingClient(t, s, era.version, true, func(req *sdk.ElicitRequest) (*sdk.ElicitResult, error) {
						shown = req.Params.Message
						return tc.answer(req)
					})
					res := callSDK(t, cs, "write_file", map[string]any{"path": "notes.txt", "content": "the exact content"})
					if asked.Load() != 1 || !strings.Contains(shown, "the exact content") || !strings.Contains(shown, "/workspace/notes.txt") {
						t.Errorf("asked %d times, showing %q", asked.Load(), shown)
					}
					_, err := os.Stat(filepath.Join(env.workspace(t, s), "notes.txt"))
					if (err == nil) != tc.written || res.IsError == tc.written || !strings.Contains(sdkText(res), tc.says) {
						t.Errorf("written=%v isError=%v %q", err == nil, res.IsError, sdkText(res))
					}
				})
			}
		})
	}
}

// No answer within the approval timeout is a denial, and the call ends.
func TestApprovalTimeout(t *testing.T) {
	s, env, _ := newTestServer(t, Options{}, service.Options{Policy: testRules(), ApprovalTimeout: 300 * time.Millisecond})
	cs, _ := elicitingClient(t, s, "2025-11-25", true, func(*sdk.ElicitRequest) (*sdk.ElicitResult, error) {
		time.Sleep(2 * time.Second)
		return yes(nil)
	})
	start := time.Now()
	res := callSDK(t, cs, "write_file", map[string]any{"path": "late.txt", "content": "x"})
	if !res.IsError || !strings.Contains(sdkText(res), "nobody answered within 300ms") || time.Since(start) > 1500*time.Millisecond {
		t.Errorf("after %v: %q", time.Since(start), sdkText(res))
	}
	if _, err := os.Stat(filepath.Join(env.workspace(t, s), "late.txt")); err == nil {
		t.Error("written without an answer")
	}
}

// A client that cannot elicit is refused with the rule named; nothing runs.
func TestApprovalWithoutCapability(t *testing.T) {
	s, env, _ := newTestServer(t, Options{}, service.Options{Policy: testRules()})
	cs, _ := elicitingClient(t, s, "", true, nil)
	res := callSDK(t, cs, "write_file", map[string]any{"path": "a.txt", "content": "x"})
	if !res.IsError || !strings.Contains(sdkText(res), `hitl.require_confirmation "write_file"`) || !strings.Contains(sdkText(res), "elicitation") {
		t.Errorf("%q", sdkText(res))
	}
	if _, err := os.Stat(filepath.Join(env.workspace(t, s), "a.txt")); err == nil {
		t.Error("written without approval")
	}
	// read_* is auto-approved.
	if res := callSDK(t, cs, "list_directory", nil); res.IsError {
		t.Errorf("list_directory: %q", sdkText(res))
	}
}

// Answers vial did not ask for are refused: a forged token, a replayed
// one, and an approval carried over to other arguments.
func TestApprovalCannotBeForged(t *testing.T) {
	s, env, _ := newTestServer(t, Options{}, service.Options{Policy: testRules()})
	cs, _ := elicitingClient(t, s, "", false, yes)
	ws := env.workspace(t, s)
	ask := func(args map[string]any) *sdk.CallToolResult {
		res := callSDK(t, cs, "write_file", args)
		if !res.NeedsInput() || res.RequestState == "" {
			t.Fatalf("no input request: %+v", res)
		}
		return res
	}
	answer := sdk.InputResponseMap{"approval": &sdk.ElicitResult{Action: "accept", Content: map[string]any{"approve": true}}}
	retry := func(args map[string]any, state string) *sdk.CallToolResult {
		res, err := cs.CallTool(t.Context(), &sdk.CallToolParams{Name: "write_file", Arguments: args, InputResponses: answer, RequestState: state})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	a := map[string]any{"path": "a.txt", "content": "approved content"}
	// A forged answer on a first call, with and without a token.
	for _, state := range []string{"", "forged-token", strings.Repeat("0", 64)} {
		if res := retry(a, state); !res.IsError || !strings.Contains(sdkText(res), "not valid") {
			t.Errorf("forged %q: %q", state, sdkText(res))
		}
	}
	if _, err := os.Stat(filepath.Join(ws, "a.txt")); err == nil {
		t.Fatal("a forged answer wrote the file")
	}
	// The real flow works once.
	tok := ask(a).RequestState
	if res := retry(a, tok); res.IsError || !strings.Contains(sdkText(res), "wrote") {
		t.Fatalf("approved: %q", sdkText(res))
	}
	// Replayed.
	os.Remove(filepath.Join(ws, "a.txt"))
	if res := retry(a, tok); !res.IsError || !strings.Contains(sdkText(res), "not valid") {
		t.Errorf("replay: %q", sdkText(res))
	}
	// Changed arguments under an approval.
	tok = ask(a).RequestState
	b := map[string]any{"path": "a.txt", "content": "something else"}
	if res := retry(b, tok); !res.IsError || !strings.Contains(sdkText(res), "not valid") {
		t.Errorf("changed arguments: %q", sdkText(res))
	}
	if _, err := os.Stat(filepath.Join(ws, "a.txt")); err == nil {
		t.Error("written under a replayed or changed approval")
	}
}

// The blocked lists and limits refuse with the rule named, and the server
// keeps serving.
func TestBlockedLists(t *testing.T) {
	s, env, _ := newTestServer(t, Options{}, service.Options{Policy: testRules()})
	ws := env.workspace(t, s)
	os.WriteFile(filepath.Join(ws, ".env"), []byte("SECRET=1"), 0o644)
	os.WriteFile(filepath.Join(ws, "big.txt"), make([]byte, 5000), 0o644)
	os.Symlink(".env", filepath.Join(ws, "innocent"))
	os.MkdirAll(filepath.Join(ws, "dir"), 0o755)
	os.WriteFile(filepath.Join(ws, "dir", ".env"), []byte("SECRET=2"), 0o644)
	cs, _ := elicitingClient(t, s, "", true, yes)
	for _, tc := range []struct {
		tool string
		args map[string]any
		rule string
	}{
		{"read_file", map[string]any{"path": ".env"}, `blocked_paths "**/.env"`},
		{"read_file", map[string]any{"path": "innocent"}, `blocked_paths "**/.env"`},
		{"read_file", map[string]any{"path": "./sub/../.env"}, `blocked_paths "**/.env"`},
		{"write_file", map[string]any{"path": ".env", "content": "x"}, `blocked_paths "**/.env"`},
		{"delete_file", map[string]any{"path": ".env"}, `blocked_paths "**/.env"`},
		{"delete_file", map[string]any{"path": "dir", "recursive": true}, "protects"},
		{"read_file", map[string]any{"path": "big.txt"}, "max_file_size"},
		{"run_shell", map[string]any{"command": "chmod  '777' f"}, `blocked_commands "chmod 777"`},
		{"run_code", map[string]any{"code": "import subprocess"}, `blocked_imports "subprocess"`},
	} {
		res := callSDK(t, cs, tc.tool, tc.args)
		if !res.IsError || !strings.Contains(sdkText(res), tc.rule) || strings.Contains(sdkText(res), "SECRET") {
			t.Errorf("%s %v: isError=%v %q", tc.tool, tc.args, res.IsError, sdkText(res))
		}
	}
	if b, _ := os.ReadFile(filepath.Join(ws, ".env")); string(b) != "SECRET=1" {
		t.Errorf(".env was changed: %q", b)
	}
	if _, err := os.Stat(filepath.Join(ws, "dir", ".env")); err != nil {
		t.Errorf("a recursive delete removed a protected file: %v", err)
	}
	// Listings hide protected entries; searches do not look inside them.
	if txt := sdkText(callSDK(t, cs, "list_directory", nil)); strings.Contains(txt, ".env") || !strings.Contains(txt, "big.txt") {
		t.Errorf("listing: %q", txt)
	}
	if txt := sdkText(callSDK(t, cs, "search_files", map[string]any{"pattern": "*", "contains": "SECRET"})); strings.Contains(txt, ".env") {
		t.Errorf("search: %q", txt)
	}
	if res := callSDK(t, cs, "run_code", map[string]any{"code": "echo still serving"}); res.IsError {
		t.Errorf("after the refusals: %q", sdkText(res))
	}
}
