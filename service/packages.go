package service

import (
	"context"
	"fmt"
	"strings"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/internal/human"
	"github.com/vial-run/vial/internal/lazyre"
	"github.com/vial-run/vial/policy"
)

// Packages a session installs (install_package) go under its shared
// workspace, which every default context binds: Python finds them through
// PYTHONPATH and Node through NODE_PATH, both set in every sandbox. They
// are downloaded through the sandbox's proxy, so only the allowlist's
// hosts are reached (pip honours HTTPS_PROXY, and PIP_INDEX_URL in
// [shell.env] points it at an internal index).
const (
	pythonPackages = "/workspace/.packages/python"
	nodePackages   = "/workspace/.packages/node"
)

// packageEnv is added to every context's environment.
var packageEnv = []string{"PYTHONPATH=" + pythonPackages, "NODE_PATH=" + nodePackages + "/node_modules"}

// searchPaths are variables whose values are lists of directories.
var searchPaths = map[string]bool{"PYTHONPATH": true, "NODE_PATH": true}

// sandboxEnv is a sandbox's environment: the environment's variables, then
// vial's (the driver's caps, packageEnv). A later variable replaces an
// earlier one of the same name — a program sees each name once — except
// the search paths, which are joined: a template's PYTHONPATH =
// "/workspace/src" keeps the installed packages importable too.
func sandboxEnv(lists ...[]string) []string {
	var out []string
	at := map[string]int{}
	for _, l := range lists {
		for _, kv := range l {
			k, v, _ := strings.Cut(kv, "=")
			i, seen := at[k]
			switch {
			case !seen:
				at[k] = len(out)
				out = append(out, kv)
			case searchPaths[k] && v != "":
				if _, old, _ := strings.Cut(out[i], "="); old != "" {
					kv = out[i] + ":" + v
				}
				out[i] = kv
			default:
				out[i] = kv
			}
		}
	}
	return out
}

// packageName is what install_package accepts: a requirement such as
// "requests", "numpy==1.26.4", "pandas>=2" or "@scope/pkg@1.2" — never an
// option (a leading "-") or anything a shell would read.
var packageName = lazyre.New(`^[A-Za-z0-9@_][A-Za-z0-9._/@-]*(\[[A-Za-z0-9_,.-]+\])?([=<>~!]=?[A-Za-z0-9.*+!-]+(,[=<>~!]=?[A-Za-z0-9.*+!-]+)*)?$`)

// InstallRequest installs a package for a session.
type InstallRequest struct {
	Name    string
	Manager string // "pip" (default) or "npm"
}

// InstallPackage installs a package into the session's workspace from the
// session's default bash context, through the sandbox's proxy (the
// environment's network policy decides which hosts it may reach), and
// makes the default Python context see it. A failing install is a result
// (pip's or npm's own output), not an error.
func (s *Session) InstallPackage(ctx context.Context, r InstallRequest) (res RunResult, err error) {
	o := s.begin("install_package", map[string]any{"name": r.Name, "manager": r.Manager})
	defer func() { s.endRun(o, res, err) }()
	if r.Manager == "" {
		r.Manager = "pip"
	}
	if len(r.Name) > 200 || !packageName.MatchString(r.Name) {
		return RunResult{}, errorf(errdefs.ErrInvalidArgument, "%q is not a package name (e.g. \"requests\", \"numpy==1.26.4\", \"@scope/pkg\")", human.Trunc(r.Name, 100))
	}
	var cmd string
	switch r.Manager {
	case "pip":
		cmd = fmt.Sprintf("python3 -m pip install --disable-pip-version-check --no-input --no-warn-script-location --target %s -- '%s'", pythonPackages, r.Name)
	case "npm":
		cmd = fmt.Sprintf("mkdir -p %s && npm install --no-audit --no-fund --prefix %s -- '%s'", nodePackages, nodePackages, r.Name)
	default:
		return RunResult{}, errorf(errdefs.ErrInvalidArgument, "manager %q: use pip or npm", human.Trunc(r.Manager, 20))
	}
	if s.svc.opts.Default.Network == nil {
		return RunResult{}, errorf(errdefs.ErrFailedPrecondition, "install_package needs the network, which is closed for this agent (the operator opens it with [sandbox.network] enabled = true and allowed_hosts naming the package index)")
	}
	if _, err := s.authorize(ctx, policy.Call{Tool: "install_package", Args: map[string]any{"name": r.Name, "manager": r.Manager}, Language: "bash", Command: cmd},
		Summary{Tool: "install_package", Action: fmt.Sprintf("install the %s package %q into /workspace/.packages", r.Manager, r.Name),
			Environment: envName(s.svc.opts.Default), Hosts: s.svc.opts.Default.Network.Allowed}); err != nil {
		return RunResult{}, err
	}
	// The fixed command above runs in the session's default bash
	// context; the decision about it was made just now.
	e, notice, err := s.svc.reg.defaultContext(ctx, s.id, Bash, s.svc.opts.Default, s)
	if err != nil {
		return RunResult{}, err
	}
	res, err = s.svc.exec(ctx, e.c, e.env, RunRequest{Code: cmd, Timeout: s.svc.limits.MaxTimeout})
	res.ContextID = e.c.ID()
	if notice != "" {
		res.Notices = append(res.Notices, notice)
	}
	if err != nil {
		return res, err
	}
	if r.Manager == "pip" && res.ExitStatus == 0 {
		// A running interpreter remembers that the directory had no
		// modules: make it look again.
		s.svc.reg.mu.Lock()
		id, ok := s.svc.reg.defaults[defaultKey{s.id, Python, ""}]
		e := s.svc.reg.byID[id]
		s.svc.reg.mu.Unlock()
		if ok && e != nil {
			_, _ = s.svc.exec(ctx, e.c, e.env, RunRequest{Code: "import importlib; importlib.invalidate_caches()"})
		}
	}
	res.Stdout = strings.TrimSpace(res.Stdout)
	return res, nil
}
