package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/vial-run/vial/config"
)

// unenforced lists the settings of res that vial accepts but does not
// apply, each with the file:line:col that set it. `vial serve` logs them
// at start-up and `vial config validate` prints them: a configuration must
// never promise a protection (or a capability) that nothing enforces.
// Each entry names the work that will apply it, where there is some.
func unenforced(res *config.Resolved) []string {
	at := func(key string) string {
		if o, ok := res.Provenance[key]; ok {
			return o.Pos.String()
		}
		return "built-in"
	}
	var out []string
	add := func(key, format string, args ...any) {
		out = append(out, fmt.Sprintf("%s (%s): ", key, at(key))+fmt.Sprintf(format, args...))
	}
	for _, name := range slices.Sorted(keys(res.MCPServers)) {
		s := res.MCPServers[name]
		if !s.Enabled {
			continue
		}
		if len(s.Config) > 0 {
			add("mcp.servers."+name+".config", "not applied: MCP has no standard way to hand a server settings; give them as arguments of its command or in its environment")
		}
		if s.APIKeyEnv != "" && s.APIKey == "" {
			add("mcp.servers."+name+".api_key_env", "%s is not set, so no bearer token is sent", s.APIKeyEnv)
		}
	}
	if res.Mode == config.ModeLocal {
		// Local mode has no sandbox at all, and says so loudly already.
		return out
	}
	if !res.Security.ReadOnlyRoot {
		add("sandbox.security.read_only_root", "ignored: every sandbox's root is read-only, whatever this says")
	}
	if !res.Security.NoNewPrivileges {
		add("sandbox.security.no_new_privileges", "ignored: every sandboxed process runs with no_new_privileges")
	}
	if !slices.Contains(res.Security.DropCapabilities, "ALL") {
		add("sandbox.security.drop_capabilities", "ignored: every sandbox drops every capability, not only %v", res.Security.DropCapabilities)
	}
	if sh := res.Shell.Default; sh != "" && !strings.HasSuffix(sh, "/bash") && sh != "bash" {
		add("shell.default_shell", "ignored: run_shell and bash contexts always run bash, not %s", sh)
	}
	if wd := res.Shell.WorkDir; wd != "" && wd != "/workspace" {
		add("shell.work_dir", "applies to vial run only: contexts of vial serve start in /workspace, not %s", wd)
	}
	if len(res.Packages) > 0 {
		add("sandbox.docker.packages", "installed only into an image built with `vial rootfs build --env NAME` or `--agent ID`; the agent's own sandboxes use the image %q as it is (an environment a model selects is refused while its image lacks them)", res.Image)
	}
	return out
}
