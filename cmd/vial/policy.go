package main

import (
	"slices"

	"github.com/vial-run/vial/config"
	"github.com/vial-run/vial/policy"
	"github.com/vial-run/vial/runtime"
)

// policyFromConfig maps the resolved configuration onto the policy rules
// the service enforces, for the MCP tools offered (their names as the
// client sees them: execute_python is configured as run_code). Every rule
// keeps the configuration key that set it, so a decision names it.
func policyFromConfig(res *config.Resolved, offered []string) *policy.Rules {
	r := &policy.Rules{
		Tools: map[string]policy.ToolRules{},
		RequireConfirmation: slices.Concat(
			policy.List("tools.require_confirmation", res.Tools.RequireConfirmation...),
			policy.List("hitl.require_confirmation", res.HITL.RequireConfirmation...)),
		AutoApprovePatterns: slices.Concat(
			policy.List("tools.auto_approve_patterns", res.Tools.AutoApprovePatterns...),
			policy.List("hitl.auto_approve_patterns", res.HITL.AutoApprovePatterns...)),
		Dangerous:          policy.DangerousPatterns{Mode: policy.DangerMode(res.Security.DangerousPatterns)},
		UnattendedPatterns: res.HITL.Unattended,
	}
	for _, name := range offered {
		canonical := config.CanonicalTool(name)
		p := res.Policy(canonical)
		var aliases []string
		for _, a := range append([]string{canonical}, config.ToolAliases(canonical)...) {
			if a != name {
				aliases = append(aliases, a)
			}
		}
		c := p.Constraints
		tr := policy.ToolRules{
			// Offered means enabled: cmd/vial offers exactly the tools the
			// configuration enables (or the operator's --tools).
			Enabled:            true,
			Aliases:            aliases,
			MaxFileSize:        c.MaxFileSize,
			BlockedPaths:       c.BlockedPaths,
			WorkspaceOnly:      c.WorkspaceOnly,
			BlockedImports:     c.BlockedImports,
			BlockedCommands:    c.BlockedCommands,
			BlockedHosts:       c.BlockedHosts,
			AutoApproveMethods: c.AutoApproveMethods,
		}
		if d := res.ToolDefs[canonical]; d != nil {
			tr.Confirm = d.RequiresConfirmation
		} else {
			tr.Confirm = true // an unknown definition asks
		}
		r.Tools[name] = tr
	}
	return r
}

// blockedImportsEnv is the variable that hands the Python driver its
// import hook's list (the hook is the real check; the policy's scan of
// the code is a guard in front of it). "" when nothing is blocked; an
// entry the hook cannot use is an error.
func blockedImportsEnv(r *policy.Rules) (string, error) {
	return runtime.BlockedImportsEnv(r.BlockedImportsFor(policy.PythonTool))
}
