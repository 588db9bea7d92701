package downstream_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vial-run/vial/mcp/downstream"
)

// helperEnv makes the test binary act as a downstream stdio server (see
// TestMain); its value is the behaviour.
const helperEnv = "VIAL_DOWNSTREAM_TEST_SERVER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(runHelper(mode))
	}
	os.Exit(m.Run())
}

// helperServer returns a stdio Server that runs this test binary in mode.
func helperServer(name, mode string) downstream.Server {
	return downstream.Server{
		Name:      name,
		Transport: downstream.TransportStdio,
		Command:   []string{os.Args[0], "-test.run=^$"},
		Env:       []string{helperEnv + "=" + mode},
		Settings: downstream.Settings{
			ConnectionTimeout: 5 * time.Second,
			ToolTimeout:       5 * time.Second,
			MaxRetries:        2,
			CacheTools:        true,
		},
	}
}

// echoSchema has keywords mcp-go's Tool type has no field for; they must
// reach vial's clients all the same.
const echoSchema = `{"$schema":"https://json-schema.org/draft/2020-12/schema","type":"object","properties":{"message":{"type":"string","minLength":1}},"required":["message"],"additionalProperties":false}`

const sumOutputSchema = `{"type":"object","properties":{"sum":{"type":"number"}},"required":["sum"]}`

// runHelper is a downstream server written with mcp-go's server package.
//
//	good     tools: echo, sum (structured), files.read and files_read (a
//	         name vial must rewrite, and one it collides with), crash,
//	         sleep, big, huge, pid, lists, add_tool
//	exit     writes to stderr and exits with status 3 at once
//	hang     reads its input and never answers
//	garbage  writes lines that are not JSON-RPC and never answers
//	chatty   like good, with a log line on stdout before every answer
//	many     1500 tools in pages of 200, the first with a 100 KiB description
//	raw      hand-written JSON-RPC: initialize and tools/list are right, the
//	         answer to tools/call is not a CallToolResult
func runHelper(mode string) int {
	switch mode {
	case "exit":
		fmt.Fprintln(os.Stderr, "helper: cannot open the database: no such file")
		return 3
	case "hang":
		io.Copy(io.Discard, os.Stdin)
		time.Sleep(time.Hour)
		return 0
	case "garbage":
		go io.Copy(io.Discard, os.Stdin)
		for i := 0; ; i++ {
			fmt.Printf("starting up, step %d\n", i)
			time.Sleep(50 * time.Millisecond)
		}
	}
	if mode == "raw" {
		return rawHelper()
	}
	if mode == "many" {
		// More tools than vial takes, one with a description of 100 KiB.
		s := mcpserver.NewMCPServer("many", "1", mcpserver.WithToolCapabilities(true), mcpserver.WithPaginationLimit(200))
		for i := range 1500 {
			desc := "Tool number " + fmt.Sprint(i)
			if i == 0 {
				desc = strings.Repeat("long ", 20<<10)
			}
			s.AddTool(mcpgo.NewTool(fmt.Sprintf("t%04d", i), mcpgo.WithDescription(desc)),
				func(context.Context, mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
					return mcpgo.NewToolResultText("ok"), nil
				})
		}
		if err := mcpserver.ServeStdio(s); err != nil {
			return 1
		}
		return 0
	}
	var lists atomic.Int64
	hooks := &mcpserver.Hooks{}
	hooks.AddBeforeListTools(func(context.Context, any, *mcpgo.ListToolsRequest) { lists.Add(1) })
	s := mcpserver.NewMCPServer("helper", "1.2.3", mcpserver.WithToolCapabilities(true), mcpserver.WithHooks(hooks))
	text := func(s string) *mcpgo.CallToolResult { return mcpgo.NewToolResultText(s) }
	echo := mcpgo.NewToolWithRawSchema("echo", "Echoes its message.", json.RawMessage(echoSchema))
	mcpgo.WithTitleAnnotation("Echo")(&echo)
	mcpgo.WithReadOnlyHintAnnotation(true)(&echo)
	s.AddTool(echo,
		func(_ context.Context, r mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
			return text("echo: " + r.GetString("message", "")), nil
		})
	s.AddTool(mcpgo.NewTool("sum", mcpgo.WithDescription("Adds a and b."),
		mcpgo.WithNumber("a"), mcpgo.WithNumber("b"),
		mcpgo.WithRawOutputSchema(json.RawMessage(sumOutputSchema))),
		func(_ context.Context, r mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
			sum := r.GetFloat("a", 0) + r.GetFloat("b", 0)
			return mcpgo.NewToolResultStructured(map[string]any{"sum": sum}, fmt.Sprint(sum)), nil
		})
	for _, n := range []string{"files.read", "files_read"} {
		s.AddTool(mcpgo.NewTool(n, mcpgo.WithDescription("Says its own name.")),
			func(context.Context, mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
				return text("I am " + n), nil
			})
	}
	s.AddTool(mcpgo.NewTool("crash", mcpgo.WithDescription("Exits with status 7.")),
		func(context.Context, mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
			fmt.Fprintln(os.Stderr, "helper: crashing on purpose")
			os.Exit(7)
			return nil, nil
		})
	s.AddTool(mcpgo.NewTool("sleep", mcpgo.WithDescription("Never answers.")),
		func(ctx context.Context, _ mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
			<-ctx.Done()
			time.Sleep(time.Hour)
			return nil, nil
		})
	s.AddTool(mcpgo.NewTool("big", mcpgo.WithDescription("Returns n bytes of text."), mcpgo.WithNumber("n")),
		func(_ context.Context, r mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
			return text(strings.Repeat("x", r.GetInt("n", 0))), nil
		})
	s.AddTool(mcpgo.NewTool("pid", mcpgo.WithDescription("Returns its process id.")),
		func(context.Context, mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
			return text(fmt.Sprint(os.Getpid())), nil
		})
	s.AddTool(mcpgo.NewTool("env", mcpgo.WithDescription("Returns its environment.")),
		func(context.Context, mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
			return text(strings.Join(os.Environ(), "\n")), nil
		})
	s.AddTool(mcpgo.NewTool("lists", mcpgo.WithDescription("How many tools/list it answered.")),
		func(context.Context, mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
			return text(fmt.Sprint(lists.Load())), nil
		})
	s.AddTool(mcpgo.NewTool("add_tool", mcpgo.WithDescription("Adds a tool named by its argument."), mcpgo.WithString("name")),
		func(_ context.Context, r mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
			name := r.GetString("name", "added")
			s.AddTool(mcpgo.NewTool(name, mcpgo.WithDescription("Added later.")),
				func(context.Context, mcpgo.CallToolRequest) (*mcpgo.CallToolResult, error) {
					return text("I was added"), nil
				})
			return text("added " + name), nil
		})
	out := io.Writer(os.Stdout)
	if mode == "chatty" {
		out = &chattyWriter{w: bufio.NewWriter(os.Stdout)}
	}
	stdio := mcpserver.NewStdioServer(s)
	if err := stdio.Listen(context.Background(), os.Stdin, out); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 1
	}
	return 0
}

// chattyWriter puts a line that is not JSON-RPC before every message, like
// a server that logs to stdout by mistake.
type chattyWriter struct{ w *bufio.Writer }

func (c *chattyWriter) Write(p []byte) (int, error) {
	c.w.WriteString("INFO handling a request\n")
	n, err := c.w.Write(p)
	c.w.Flush()
	return n, err
}

// rawHelper answers with hand-written JSON-RPC, to send what no SDK would.
func rawHelper() int {
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<20)
	for in.Scan() {
		var req struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
		}
		if json.Unmarshal(in.Bytes(), &req) != nil || req.ID == nil {
			continue
		}
		var result string
		switch req.Method {
		case "initialize":
			result = `{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"raw","version":"0"}}`
		case "tools/list":
			result = `{"tools":[{"name":"bad","inputSchema":{"type":"object"}},{"name":"schemaless"},{"name":"weird","inputSchema":[1]}]}`
		case "tools/call":
			result = `{"content":"this should be an array"}`
		default:
			fmt.Printf(`{"jsonrpc":"2.0","id":%s,"error":{"code":-32601,"message":"no"}}`+"\n", req.ID)
			continue
		}
		fmt.Printf(`{"jsonrpc":"2.0","id":%s,"result":%s}`+"\n", req.ID, result)
	}
	return 0
}
