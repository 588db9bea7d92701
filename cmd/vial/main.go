// Command vial is a daemon-less microsandbox runner for AI agents.
//
// Each subcommand lives in its own file and registers itself with
// register; main only parses the global flags and dispatches.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// globals are the flags every subcommand shares.
type globals struct {
	StateDir string // root of every piece of state vial keeps
	LogLevel string
	// LogLevelSet reports that the operator chose the level (--log-level
	// or VIAL_LOG_LEVEL), which then wins over the configuration's.
	LogLevelSet bool
	Log         *slog.Logger
	Stdout      io.Writer
	Stderr      io.Writer
}

// command is one subcommand: run receives the arguments after its name and
// returns the process exit code.
type command struct {
	summary string
	run     func(ctx context.Context, g *globals, args []string) int
}

var commands = map[string]command{}

// register adds a subcommand; called from init functions.
func register(name, summary string, run func(context.Context, *globals, []string) int) {
	if _, dup := commands[name]; dup {
		panic("duplicate command " + name)
	}
	commands[name] = command{summary: summary, run: run}
}

// exitUsage is the exit code for bad command-line usage, as sysexits(3) and
// Go's flag package use.
const exitUsage = 2

func main() {
	os.Exit(realMain(os.Args[1:]))
}

func realMain(args []string) int {
	// Hidden helper entry points re-exec'd by vial itself (e.g. the crun
	// mount-namespace shim) run before anything else.
	if len(args) > 0 {
		if h, ok := hiddenEntry[args[0]]; ok {
			return h(args[1:])
		}
	}
	g := &globals{Stdout: os.Stdout, Stderr: os.Stderr}
	fs := flag.NewFlagSet("vial", flag.ContinueOnError)
	fs.SetOutput(os.Stderr)
	fs.StringVar(&g.StateDir, "state-dir", envOr("VIAL_STATE_DIR", "/var/lib/vial"), stateDirUsage)
	fs.StringVar(&g.LogLevel, "log-level", envOr("VIAL_LOG_LEVEL", "warn"), logLevelUsage)
	fs.Usage = func() { usage(fs) }
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	fs.Visit(func(f *flag.Flag) { g.LogLevelSet = g.LogLevelSet || f.Name == "log-level" })
	g.LogLevelSet = g.LogLevelSet || os.Getenv("VIAL_LOG_LEVEL") != ""
	if err := g.setLogLevel(g.LogLevel); err != nil {
		fmt.Fprintf(os.Stderr, "vial: %v\n", err)
		return exitUsage
	}
	rest := fs.Args()
	if len(rest) == 0 {
		usage(fs)
		return exitUsage
	}
	cmd, ok := commands[rest[0]]
	if !ok {
		fmt.Fprintf(os.Stderr, "vial: unknown command %q (see vial -h)\n", rest[0])
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cmd.run(ctx, g, rest[1:])
}

const (
	stateDirUsage = "directory holding all of vial's state (sandboxes, images, runtime roots)"
	logLevelUsage = "log level: debug, info, warn, error"
)

// setLogLevel (re)creates the logger at level. stdout is the protocol
// (vial serve speaks MCP on it): logs go to stderr.
func (g *globals) setLogLevel(level string) error {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return fmt.Errorf("--log-level %q: want debug, info, warn or error", level)
	}
	g.LogLevel = level
	g.Log = slog.New(slog.NewTextHandler(g.Stderr, &slog.HandlerOptions{Level: lvl}))
	return nil
}

// newFlagSet returns a subcommand's flag set. It also takes the global
// flags, so that they work after the subcommand as well as before it
// (`vial serve --log-level debug` as much as `vial --log-level debug
// serve`): an MCP client's configuration is usually written the first way.
func newFlagSet(g *globals, name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(g.Stderr)
	fs.Func("state-dir", stateDirUsage, func(v string) error { g.StateDir = v; return nil })
	fs.Func("log-level", logLevelUsage, func(v string) error {
		g.LogLevelSet = true
		return g.setLogLevel(v)
	})
	return fs
}

// parseFlags parses a subcommand's arguments. ok is false when the command
// must return code at once (-h, or bad usage already reported).
func parseFlags(g *globals, fs *flag.FlagSet, args []string) (code int, ok bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0, false
		}
		return exitUsage, false
	}
	return 0, true
}

// hiddenEntry holds internal entry points that vial re-execs itself into.
var hiddenEntry = map[string]func(args []string) int{}

func usage(fs *flag.FlagSet) {
	fmt.Fprintf(os.Stderr, "usage: vial [global flags] COMMAND [args]\n\ncommands:\n")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(os.Stderr, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprintf(os.Stderr, "\nglobal flags:\n")
	fs.PrintDefaults()
}

func envOr(key, def string) string {
	if v, ok := os.LookupEnv(key); ok && v != "" {
		return v
	}
	return def
}
