package main

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vial-run/vial/config"
	"github.com/vial-run/vial/egress"
	"github.com/vial-run/vial/mcp"
	"github.com/vial-run/vial/observe"
	"github.com/vial-run/vial/policy"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/runtime"
	"github.com/vial-run/vial/service"
)

func init() {
	register("serve", "serve sandboxes to an MCP client over stdio (default) or streamable HTTP", cmdServe)
}

// serveConfig is everything `vial serve` needs: the flags, refined by the
// layered configuration (--agent, --config-dir) in applyServeConfig.
type serveConfig struct {
	// Env is the agent's own environment: runtime, image, limits, the
	// variables of [shell.env].
	Env service.Environment
	// Environments are the named environments create_context may select,
	// by name; nil when no configuration is loaded.
	Environments map[string]service.Environment
	// Limits bound each call (time, code and file sizes).
	Limits service.Limits
	// MaxContexts bounds the sandboxes alive at once, default contexts
	// and one-shot runs included.
	MaxContexts int
	// IdleTimeout stops a context unused for this long; 0 = never.
	IdleTimeout time.Duration
	// MaxLifetime stops a context this long after it started; 0 = never.
	MaxLifetime time.Duration
	// AllowUnsandboxed is the operator's acknowledgement (a flag, never a
	// tool argument) that sandbox.mode = "local" may run code unsandboxed.
	AllowUnsandboxed bool
	// Local runs contexts as host processes with no isolation: the
	// configuration says sandbox.mode = "local" and the operator
	// acknowledged it.
	Local bool
	// MCP holds the protocol front end's options; its Service is set by
	// cmdServe.
	MCP mcp.Options
	// Policy is what the configuration allows, refuses and asks a person
	// about; nil without a configuration (every offered tool runs).
	Policy *policy.Rules
	// ApprovalTimeout bounds how long a person may take to approve.
	ApprovalTimeout time.Duration
	// Agent is the agent whose configuration applies.
	Agent string
	// Cache caches execute_python results (the operator's opt-in).
	Cache service.CacheOptions
	// HTTP is the network policy of http_request and fetch_url.
	HTTP *service.NetworkPolicy
	// OperatorApprovals queues calls that need approval from clients that
	// cannot ask a person, for the operator's page and API.
	OperatorApprovals bool
	// Pool keeps sandboxes warm (seed 002's session pool).
	Pool service.PoolOptions
	// QueueWait is how long a request waits for a sandbox slot when all
	// are taken (seed 000's bounded executor); 0 refuses at once.
	QueueWait time.Duration
	// Secrets are the configuration's secret values, masked in the audit
	// log as in the log.
	Secrets []string
	// RetentionDays is how long audit files are kept ([logging]
	// retention_days; 0 keeps them all).
	RetentionDays int
}

// serveTeardownTimeout bounds the teardown of every sandbox at exit.
const serveTeardownTimeout = 15 * time.Second

func cmdServe(ctx context.Context, g *globals, args []string) int {
	fs := newFlagSet(g, "vial serve")
	httpAddr := fs.String("http", "", "serve streamable HTTP on ADDR (e.g. 127.0.0.1:8765, path /mcp) instead of stdio")
	tokenFile := fs.String("http-token-file", "", "file holding the bearer token HTTP clients must send (default $VIAL_HTTP_TOKEN, else a token generated at start and written to <state-dir>/http-token)")
	noAuth := fs.Bool("http-no-auth", false, "serve HTTP without a token: accepted only on a loopback address")
	adminTokenFile := fs.String("admin-token-file", "", "file holding the operator token of the page at / and the API at /api/ on the --http listener (default $VIAL_ADMIN_TOKEN, else a token generated at start and written to <state-dir>/admin-token); never the MCP token")
	apiWrites := fs.Bool("api-allow-writes", false, "let the operator API and page save agent files (PUT /api/v1/execution/agents/ID/config); read-only without it")
	rt := fs.String("runtime", "runc", "OCI runtime: runc, crun or runsc")
	image := fs.String("image", "host", "image: host, an absolute directory, or a stored image name")
	var mem, tmp, disk, maxFile, maxCode sizeFlag
	fs.Var(&mem, "memory", "memory limit per sandbox, e.g. 256m (default 512m)")
	fs.Var(&tmp, "tmp", "size of each sandbox's /tmp tmpfs (default 64m)")
	fs.Var(&disk, "disk", "size of each workspace volume (bytes, and one file per 16 KiB of it), and largest file (default 1g)")
	cpus := fs.Float64("cpus", 0, "CPU quota per sandbox in cores, e.g. 0.5 (default 1)")
	pids := fs.Int64("pids", 0, "maximum processes and threads per sandbox (default 256)")
	timeout := fs.Duration("timeout", service.DefaultLimits.DefaultTimeout, "default time limit of one call")
	maxTimeout := fs.Duration("max-timeout", service.DefaultLimits.MaxTimeout, "ceiling for a call's time limit; a model may ask for less, never more")
	fs.Var(&maxCode, "max-code-size", "largest code or command accepted (default 1m)")
	fs.Var(&maxFile, "max-file-size", "largest file write_file writes and search_files looks inside (default 10m)")
	maxContexts := fs.Int("max-contexts", service.DefaultMaxSandboxes, "maximum number of live sandboxes: contexts (default ones included) and one-shot runs")
	idle := fs.Duration("idle-timeout", service.DefaultIdleTimeout, "stop a context unused for this long (0: never)")
	lifetime := fs.Duration("max-lifetime", service.DefaultMaxLifetime, "stop a context this long after it started (0: never)")
	poolSize := fs.Int("pool-size", 3, "warm sandboxes kept ready per environment and language in use, for create_context and execute_python (0: none)")
	queueWait := fs.Duration("queue-wait", 30*time.Second, "how long a call waits for a sandbox when --max-contexts are all in use (0: refuse at once)")
	tools := fs.String("tools", "", "comma-separated tools to offer (default: all of "+strings.Join(mcp.ToolNames(), ",")+")")
	legacy := fs.Bool("legacy-protocol", false, "answer server/discover with Method not found so clients use the initialize handshake")
	agent := fs.String("agent", "", "agent ID whose configuration applies (runtime, image, limits, tools)")
	configDir := fs.String("config-dir", "", "configuration directory (default $VIAL_CONFIG_DIR, else /etc/vial when --agent is given)")
	metricsAddr := fs.String("metrics", "", "also serve Prometheus metrics at http://ADDR/metrics (with --http they are on its listener too)")
	metricsTokenFile := fs.String("metrics-token-file", "", "file holding a bearer token for /metrics, for scrapers (default $VIAL_METRICS_TOKEN); the MCP token is accepted too")
	auditDir := fs.String("audit-dir", "", "directory of the audit log, one JSON line per tool call and decision (default <state-dir>/audit; \"none\" keeps no audit log)")
	allowLocal := fs.Bool(localAckFlag, false, "acknowledge that an agent with sandbox.mode = \"local\" runs code on this host with NO ISOLATION (refused without it)")
	fs.Usage = func() {
		fmt.Fprintln(g.Stderr, "usage: vial serve [flags]")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(g, fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(g.Stderr, "vial serve: unexpected arguments %q\n", fs.Args())
		return exitUsage
	}
	if *maxContexts < 1 {
		fmt.Fprintln(g.Stderr, "vial serve: --max-contexts must be at least 1")
		return exitUsage
	}
	if *httpAddr == "" && (*tokenFile != "" || *noAuth || *adminTokenFile != "" || *apiWrites) {
		fmt.Fprintln(g.Stderr, "vial serve: --http-token-file, --http-no-auth, --admin-token-file and --api-allow-writes need --http (the page and the API live on the HTTP listener)")
		return exitUsage
	}

	cfg := serveConfig{
		Env: service.Environment{
			Runtime: *rt,
			Image:   *image,
			Limits:  runtime.Limits{MemoryBytes: mem.bytes, CPUs: *cpus, Pids: *pids, TmpBytes: tmp.bytes, DiskBytes: disk.bytes},
		},
		Limits: service.Limits{
			MaxCodeBytes:   int(maxCode.bytes),
			DefaultTimeout: *timeout,
			MaxTimeout:     *maxTimeout,
			MaxFileBytes:   maxFile.bytes,
		},
		MaxContexts:      *maxContexts,
		Pool:             service.PoolOptions{Size: *poolSize},
		QueueWait:        *queueWait,
		RetentionDays:    defaultRetentionDays,
		IdleTimeout:      *idle,
		MaxLifetime:      *lifetime,
		AllowUnsandboxed: *allowLocal,
		MCP: mcp.Options{
			Version:        version,
			LegacyProtocol: *legacy,
		},
	}
	cfg.MCP.Tools = mcp.DefaultTools()
	if *tools != "" {
		cfg.MCP.Tools = nil
		for _, t := range strings.Split(*tools, ",") {
			if t = strings.TrimSpace(t); t != "" {
				cfg.MCP.Tools = append(cfg.MCP.Tools, t)
			}
		}
	}
	// The configuration applies when the operator names an agent or a
	// directory, by flag or by $VIAL_CONFIG_DIR.
	dir := *configDir
	if dir == "" {
		dir = os.Getenv("VIAL_CONFIG_DIR")
	}
	if *agent != "" || dir != "" {
		if err := applyServeConfig(g, fs, dir, *agent, &cfg); err != nil {
			return fail(g, err)
		}
	}
	if cfg.Local {
		warnUnsandboxed(g.Stderr, "vial serve")
	}
	// Decide how HTTP clients authenticate before anything starts.
	var token, adminToken string
	if *httpAddr != "" {
		var err error
		if token, err = httpToken(g, *httpAddr, *tokenFile, *noAuth); err != nil {
			fmt.Fprintf(g.Stderr, "vial serve: %v\n", err)
			return exitUsage
		}
		if adminToken, err = operatorToken(g, *httpAddr, *adminTokenFile, token); err != nil {
			fmt.Fprintf(g.Stderr, "vial serve: %v\n", err)
			return exitUsage
		}
	}

	mtoken, err := metricsToken(*metricsTokenFile)
	if err != nil {
		fmt.Fprintf(g.Stderr, "vial serve: %v\n", err)
		return exitUsage
	}
	// /metrics accepts the metrics token and the MCP token; with neither
	// it is open, which only a loopback listener allows.
	metricsTokens := []string{mtoken, token}
	var metricsLn net.Listener
	if *metricsAddr != "" {
		if metricsLn, err = listenMetrics(*metricsAddr, metricsTokens); err != nil {
			fmt.Fprintf(g.Stderr, "vial serve: %v\n", err)
			return exitUsage
		}
		defer metricsLn.Close()
	}
	obs, err := openObservability(g, *auditDir, cfg.RetentionDays, cfg.Secrets)
	if err != nil {
		return fail(g, err)
	}
	// Runs after the service's teardown below, so its last events are
	// written.
	defer obs.close(g)

	svc, err := openService(ctx, g, cfg, obs.bus)
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
		if err := svc.Close(tctx); err != nil {
			g.Log.Error("tearing down sandboxes", "error", err)
			return
		}
		// The networks' shared parts (the private base mount, the
		// resolv.conf) go with the last network: nothing stays mounted
		// after serve ends. Networks of other live vial processes of the
		// state directory are left alone.
		if _, err := egress.Collect(g.StateDir); err != nil {
			g.Log.Warn("removing the network directory", "error", err)
		}
		g.Log.Info("sandboxes torn down", "took", time.Since(start).Round(time.Millisecond))
	}()

	cfg.MCP.Service = svc
	cfg.MCP.Log = g.Log // the configuration may have replaced it ([logging])
	cfg.MCP.Resources = append(cfg.MCP.Resources, obs.resource())
	metricsHandler := metricsAuth(metricsTokens, obs.metrics.Handler())
	if *httpAddr != "" {
		routes, closeAPI, err := operatorRoutes(g, svc, operatorOptions{
			Token:       adminToken,
			ConfigDir:   cmp.Or(dir, config.DefaultDir),
			AllowWrites: *apiWrites,
			Approvals:   serviceApprovals{svc},
			Metrics:     obs.metrics,
			Audit:       obs.auditSource(),
		})
		if err != nil {
			return fail(g, err)
		}
		defer closeAPI()
		routes["/metrics"] = metricsHandler
		cfg.MCP.HTTPRoutes = routes
	}
	if metricsLn != nil {
		mctx, cancel := context.WithCancel(ctx)
		defer cancel()
		go serveMetrics(mctx, g, metricsLn, metricsHandler)
	}
	srv, err := mcp.NewServer(cfg.MCP)
	if err != nil {
		fmt.Fprintf(g.Stderr, "vial serve: %v\n", err)
		return exitUsage
	}
	if *httpAddr != "" {
		err = srv.ServeHTTP(ctx, *httpAddr, token)
	} else {
		err = srv.ServeStdio(ctx, os.Stdin, g.Stdout)
	}
	srv.Close()
	if err != nil {
		return fail(g, err)
	}
	return 0
}

// openService opens the engine (recovering what a crashed vial left),
// checks the runtime and image, and builds the application core on the
// engine, or on host processes in local mode.
func openService(ctx context.Context, g *globals, cfg serveConfig, events *observe.Bus) (*service.Service, error) {
	eng, err := openEngine(ctx, g, true)
	if err != nil {
		return nil, err
	}
	var provider service.Provider
	if cfg.Local {
		ws, err := eng.OpenWorkspaces()
		if err != nil {
			return nil, err
		}
		if provider, err = service.NewLocalProvider(eng.StateDir(), ws); err != nil {
			ws.Close()
			return nil, err
		}
	} else {
		p, err := service.NewEngineProvider(eng, func(name string) (*rootfs.Image, error) { return resolveImage(eng.StateDir(), name) })
		if err != nil {
			return nil, err
		}
		p.Events, p.Log = events, g.Log
		if err := p.Check(cfg.Env); err != nil {
			p.Close()
			return nil, err
		}
		provider = p
	}
	svc, err := service.New(service.Options{
		Provider:          provider,
		Default:           cfg.Env,
		Environments:      cfg.Environments,
		Limits:            cfg.Limits,
		Policy:            cfg.Policy,
		ApprovalTimeout:   cfg.ApprovalTimeout,
		Agent:             cfg.Agent,
		MaxSandboxes:      cfg.MaxContexts,
		AdmissionWait:     cfg.QueueWait,
		OperatorApprovals: cfg.OperatorApprovals,
		Cache:             cfg.Cache,
		HTTP:              cfg.HTTP,
		Pool:              cfg.Pool,
		IdleTimeout:       neverIfZero(cfg.IdleTimeout),
		MaxLifetime:       neverIfZero(cfg.MaxLifetime),
		Events:            events,
		Log:               g.Log,
	})
	if err != nil {
		provider.Close()
		return nil, err
	}
	// The start-up check: a real sandbox in every environment. The
	// agent's own must work, or serving would only fail later; a named
	// environment that does not is logged and stays selectable (its
	// image may be built later).
	for _, h := range svc.Health(ctx) {
		name := cmp.Or(h.Environment, "the agent's own")
		switch {
		case h.OK:
			g.Log.Info("environment ready", "environment", name, "runtime", h.Runtime, "image", h.Image, "took", h.Took.Round(time.Millisecond))
		case h.Environment == "":
			svc.Close(context.WithoutCancel(ctx))
			return nil, fmt.Errorf("the start-up check failed: a sandbox of %s environment (runtime %s, image %s) did not work: %w", name, h.Runtime, h.Image, h.Err)
		default:
			g.Log.Warn("environment unavailable", "environment", name, "runtime", h.Runtime, "image", h.Image, "error", h.Err)
		}
	}
	return svc, nil
}

// neverIfZero maps serve's "0 = never" onto the service's "negative =
// disabled".
func neverIfZero(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// httpToken decides the bearer token HTTP clients must present: from
// --http-token-file, else $VIAL_HTTP_TOKEN, else a fresh random one,
// printed to stderr and written to a 0600 file under the state directory
// for the operator's client configuration. "" means no authentication,
// which only --http-no-auth on a loopback address gives: a listener any
// host can reach would hand code execution to anyone who finds it.
func httpToken(g *globals, addr, file string, noAuth bool) (string, error) {
	if noAuth {
		if file != "" || os.Getenv("VIAL_HTTP_TOKEN") != "" {
			return "", errors.New("--http-no-auth contradicts a token (--http-token-file or $VIAL_HTTP_TOKEN)")
		}
		if !loopback(addr) {
			return "", fmt.Errorf("--http-no-auth is accepted only on a loopback address (127.0.0.1, [::1], localhost), not %q: anyone who reaches the port could run code", addr)
		}
		fmt.Fprintf(g.Stderr, "vial serve: WARNING: HTTP on %s without authentication (--http-no-auth): every local user and program can run code through it\n", addr)
		return "", nil
	}
	return secretToken(g, tokenSource{File: file, Env: "VIAL_HTTP_TOKEN", StateFile: "http-token", What: "the HTTP token",
		Announce: func(tok, path string) string {
			return fmt.Sprintf("HTTP clients must send \"Authorization: Bearer %s\" (also in %s)", tok, path)
		}})
}

// tokenSource says where a bearer token comes from: a file the operator
// names, else an environment variable, else a token generated at start
// and written to StateFile (0600) under the state directory, announced on
// stderr.
type tokenSource struct {
	File      string // --...-token-file; "" for none
	Env       string // the environment variable
	StateFile string // file name under the state directory
	What      string // for messages: "the HTTP token"
	// Announce says where a generated token is, for stderr.
	Announce func(tok, path string) string
}

// secretToken decides a bearer token as src says. A token shorter than 16
// characters is refused: it could be guessed.
func secretToken(g *globals, src tokenSource) (string, error) {
	if src.File != "" {
		b, err := os.ReadFile(src.File)
		if err != nil {
			return "", fmt.Errorf("reading %s: %w", src.What, err)
		}
		tok := strings.TrimSpace(string(b))
		if len(tok) < 16 {
			return "", fmt.Errorf("%s in %s is shorter than 16 characters", src.What, src.File)
		}
		return tok, nil
	}
	if tok := strings.TrimSpace(os.Getenv(src.Env)); tok != "" {
		if len(tok) < 16 {
			return "", fmt.Errorf("$%s is shorter than 16 characters", src.Env)
		}
		return tok, nil
	}
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	tok := hex.EncodeToString(b[:])
	stateDir, err := filepath.Abs(g.StateDir)
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(stateDir, 0o711); err != nil {
		return "", err
	}
	path := filepath.Join(stateDir, src.StateFile)
	if err := writeFileAtomic(path, []byte(tok+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("writing %s: %w", src.What, err)
	}
	fmt.Fprintf(g.Stderr, "vial serve: %s\n", src.Announce(tok, path))
	return tok, nil
}

// loopback reports whether a listen address is on a loopback interface
// only.
func loopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// writeFileAtomic writes data to a temporary file next to path with mode,
// then renames it over path: a reader never sees a partial file, and the
// mode is set before any byte is written.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), path)
}
