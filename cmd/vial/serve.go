package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/vial-run/vial/mcp"
	"github.com/vial-run/vial/runtime"
)

func init() {
	register("serve", "serve sandboxes to an MCP client over stdio (default) or streamable HTTP", cmdServe)
}

// serveConfig is everything `vial serve` needs to build its sandbox engine
// and MCP server. Flags fill it; the configuration layer (--agent,
// --config-dir) will refine it through loadServeConfig.
type serveConfig struct {
	Runtime string         // OCI runtime: runc, crun, runsc
	Image   string         // image for contexts and one-shot runs
	Limits  runtime.Limits // per-sandbox limits; zero fields take runtime.DefaultLimits
	// MaxContexts bounds live contexts, default ones included.
	MaxContexts int
	// IdleTimeout stops a context unused for this long; 0 = never.
	IdleTimeout time.Duration
	// MaxLifetime stops a context this long after it started; 0 = never.
	MaxLifetime time.Duration
	// Env is the environment of every sandboxed process (KEY=VALUE), from
	// the configuration's [shell.env].
	Env []string
	// Environments are the named environments create_context may select,
	// by name; nil when no configuration is loaded.
	Environments map[string]environment
	// AllowUnsandboxed is the operator's acknowledgement (a flag, never a
	// tool argument) that sandbox.mode = "local" may run code unsandboxed.
	AllowUnsandboxed bool
	// Local runs contexts as host processes with no isolation: the
	// configuration says sandbox.mode = "local" and the operator
	// acknowledged it.
	Local bool
	// MCP holds the tool layer's options; its Engine is set by cmdServe.
	MCP mcp.Options
}

// serveEngine is the sandbox side of `vial serve`: the mcp.Engine plus a
// Close that tears down every sandbox the engine started.
type serveEngine interface {
	mcp.Engine
	// Close stops every context and one-shot sandbox and releases their
	// resources; ctx bounds how long it may take.
	Close(ctx context.Context) error
}

// newServeEngine builds the engine behind `vial serve` from the real runtime
// (runtime.Engine and its contexts). It is set by engine_adapter.go; while
// it is nil, `vial serve` refuses to start rather than pretend.
var newServeEngine func(ctx context.Context, g *globals, cfg serveConfig) (serveEngine, error)

// serveTeardownTimeout bounds the teardown of every sandbox at exit.
const serveTeardownTimeout = 15 * time.Second

func cmdServe(ctx context.Context, g *globals, args []string) int {
	fs := flag.NewFlagSet("vial serve", flag.ContinueOnError)
	fs.SetOutput(g.Stderr)
	httpAddr := fs.String("http", "", "serve streamable HTTP on ADDR (e.g. 127.0.0.1:8765, path /mcp) instead of stdio")
	rt := fs.String("runtime", "runc", "OCI runtime: runc, crun or runsc")
	image := fs.String("image", "host", "image: host, an absolute directory, or a stored image name")
	var mem, tmp, maxFile, maxCode sizeFlag
	fs.Var(&mem, "memory", "memory limit per sandbox, e.g. 256m (default 512m)")
	fs.Var(&tmp, "tmp", "size of each sandbox's /tmp tmpfs (default 64m)")
	cpus := fs.Float64("cpus", 0, "CPU quota per sandbox in cores, e.g. 0.5 (default 1)")
	pids := fs.Int64("pids", 0, "maximum processes and threads per sandbox (default 256)")
	timeout := fs.Duration("timeout", mcp.DefaultLimits.DefaultTimeout, "default time limit of one call")
	maxTimeout := fs.Duration("max-timeout", mcp.DefaultLimits.MaxTimeout, "ceiling for a call's time limit; a model may ask for less, never more")
	fs.Var(&maxCode, "max-code-size", "largest code or command accepted (default 1m)")
	fs.Var(&maxFile, "max-file-size", "largest file read_file and write_file handle (default 10m)")
	maxContexts := fs.Int("max-contexts", 16, "maximum number of live contexts")
	idle := fs.Duration("idle-timeout", runtime.DefaultIdleTimeout, "stop a context unused for this long (0: never)")
	lifetime := fs.Duration("max-lifetime", runtime.DefaultMaxLifetime, "stop a context this long after it started (0: never)")
	tools := fs.String("tools", "", "comma-separated tools to offer (default: all of "+strings.Join(mcp.ToolNames(), ",")+")")
	legacy := fs.Bool("legacy-protocol", false, "answer server/discover with Method not found so clients use the initialize handshake")
	agent := fs.String("agent", "", "agent ID whose configuration applies (runtime, image, limits, tools)")
	configDir := fs.String("config-dir", "", "configuration directory (default $VIAL_CONFIG_DIR or /etc/vial)")
	allowLocal := fs.Bool(localAckFlag, false, "acknowledge that an agent with sandbox.mode = \"local\" runs code on this host with NO ISOLATION (refused without it)")
	fs.Usage = func() {
		fmt.Fprintln(g.Stderr, "usage: vial serve [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(g.Stderr, "vial serve: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	if *maxContexts < 1 {
		fmt.Fprintln(g.Stderr, "vial serve: --max-contexts must be at least 1")
		return exitUsage
	}

	cfg := serveConfig{
		Runtime:          *rt,
		Image:            *image,
		Limits:           runtime.Limits{MemoryBytes: mem.bytes, CPUs: *cpus, Pids: *pids, TmpBytes: tmp.bytes},
		MaxContexts:      *maxContexts,
		IdleTimeout:      *idle,
		MaxLifetime:      *lifetime,
		AllowUnsandboxed: *allowLocal,
		MCP: mcp.Options{
			Version: version,
			Limits: mcp.Limits{
				MaxCodeBytes:   int(maxCode.bytes),
				DefaultTimeout: *timeout,
				MaxTimeout:     *maxTimeout,
				MaxFileBytes:   maxFile.bytes,
			},
			LegacyProtocol: *legacy,
		},
	}
	if *tools != "" {
		for _, t := range strings.Split(*tools, ",") {
			if t = strings.TrimSpace(t); t != "" {
				cfg.MCP.Tools = append(cfg.MCP.Tools, t)
			}
		}
	}
	if *agent != "" || *configDir != "" {
		if err := applyServeConfig(g, fs, *configDir, *agent, &cfg); err != nil {
			return fail(g, err)
		}
	}
	// The configuration may have replaced the logger ([logging]).
	cfg.MCP.Log = g.Log
	if cfg.Local {
		warnUnsandboxed(g.Stderr, "vial serve")
	}
	if newServeEngine == nil {
		fmt.Fprintln(g.Stderr, "vial serve: this build has no sandbox engine adapter (cmd/vial/engine_adapter.go)")
		return exitFailed
	}

	eng, err := newServeEngine(ctx, g, cfg)
	if err != nil {
		return fail(g, err)
	}
	// Every sandbox goes when serve ends, whatever ended it (stdin EOF,
	// SIGTERM, a transport error). Teardown must not be cut short by the
	// cancellation that ended serving.
	defer func() {
		tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), serveTeardownTimeout)
		defer cancel()
		start := time.Now()
		if err := eng.Close(tctx); err != nil {
			g.Log.Error("tearing down sandboxes", "error", err)
			return
		}
		g.Log.Info("sandboxes torn down", "took", time.Since(start).Round(time.Millisecond))
	}()

	cfg.MCP.Engine = eng
	srv, err := mcp.NewServer(cfg.MCP)
	if err != nil {
		fmt.Fprintf(g.Stderr, "vial serve: %v\n", err)
		return exitUsage
	}
	if *httpAddr != "" {
		err = srv.ServeHTTP(ctx, *httpAddr)
	} else {
		err = srv.ServeStdio(ctx, os.Stdin, g.Stdout)
	}
	if err != nil {
		return fail(g, err)
	}
	return 0
}
