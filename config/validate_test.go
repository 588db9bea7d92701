package config

import (
	"errors"
	"testing"
)

// TestValidationErrors checks error messages word for word against
// testdata/golden/errors/NAME.err (go test -update rewrites them). Each
// case must report every problem at once, with file:line:col.
func TestValidationErrors(t *testing.T) {
	tests := []struct {
		name  string
		files map[string]string
		agent string
		sets  []string
		count int  // how many errors
		all   bool // Validate the whole tree, not Load one agent
	}{
		{
			name: "unknown-keys",
			files: map[string]string{"config/execution.toml": `[sandbox]
timout_seconds = 10

[sandbox.resources]
memroy_limit = "1g"

[sandbox.network]
enable = true

[sandbox.secruity]
read_only_root = false

[logging]
level = "info"
colour = true
`},
			count: 5,
		},
		{
			name: "wrong-types",
			files: map[string]string{"config/execution.toml": `[sandbox]
timeout_seconds = "60"

[sandbox.resources]
cpu_limit = "two"
memory_limit = true

[sandbox.network]
enabled = "yes"
allowed_hosts = "pypi.org"

[shell.env]
DEBUG = 1

[tools]
enabled = ["read_file", 3]
`},
			count: 7,
		},
		{
			name: "bad-values",
			files: map[string]string{"config/execution.toml": `[sandbox]
mode = "remote"
runtime = "kata"
timeout_seconds = 0

[sandbox.resources]
memory_limit = "lots"
disk_limit = "1x"
cpu_limit = 0
pids_limit = -1
tmp_limit = "1k"

[sandbox.network]
allowed_hosts = ["pypi.org", "bad host!", "*.example.com", "10.0.0.0/8", "h:99999"]

[sandbox.security]
drop_capabilities = ["ALL", "NET_RAWW", "cap_sys_admin"]

[shell]
work_dir = "workspace"

[logging]
level = "verbose"
`},
			count: 13,
		},
		{
			name: "unknown-tools",
			files: map[string]string{"agents/a/agent.toml": `[tools]
enabled = ["read_fil", "web_search", "run_python"]
require_confirmation = ["nope"]
auto_approve_patterns = ["read_[", "list_*"]

[tools.config.web_serch]
provider = "x"

[tools.config.web_search]
providr = "tavily"
max_results = "ten"

[hitl]
require_confirmation = ["writefile"]
`},
			agent: "a",
			count: 7,
		},
		{
			name: "extends-missing",
			files: map[string]string{
				"agents/a/agent.toml":        "extends = \"pyhton-dev\"\n",
				"config/environments/t.toml": "[metadata]\nname = \"other\"\nextends = \"nowhere\"\n",
			},
			agent: "a",
			count: 3,
			all:   true,
		},
		{
			name: "extends-cycle",
			files: map[string]string{
				"agents/a/agent.toml":          "extends = \"one\"\n",
				"config/environments/one.toml": "extends = \"two\"\n",
				"config/environments/two.toml": "[metadata]\nextends = \"one\"\n",
			},
			agent: "a",
			count: 1,
		},
		{
			name: "interpolation",
			files: map[string]string{
				"agents/a/agent.toml": `[shell.env]
TOKEN = "${UNSET_TOKEN}"
BAD = "${1X}"
OPEN = "${HOME"
OK = "$${LITERAL}"

[sandbox.resources]
memory_limit = "${MEM:lots}"
`,
			},
			agent: "a",
			count: 4,
		},
		{
			name: "syntax",
			files: map[string]string{
				"config/execution.toml": "[sandbox]\ntimeout_seconds = 60\ntimeout_seconds = 61\n",
				"agents/a/agent.toml":   "[sandbox\nmode = \"docker\"\n",
			},
			agent: "a",
			count: 2,
		},
		{
			name: "mcp-servers",
			files: map[string]string{
				"config/mcp.toml": `[settings]
tool_timeout = 0

[servers.a]
url = "stdio://"
transport = "stdio"

[servers.b]
url = "ftp://x"

[servers.c]
url = "http://c:1"
transport = "stdio"

[servers.d]
enabled = true
api_key_env = "not-a-name"

["bad name"]
x = 1
`,
			},
			count: 7,
		},
		{
			name:  "set-overrides",
			files: map[string]string{},
			sets:  []string{"sandbox.timeout_seconds=abc", "sandbox.nope=1", "novalue", "sandbox.resources.memory_limit=lots", "a..b=1"},
			count: 5,
		},
		{
			name: "every-layer-at-once",
			files: map[string]string{
				"config/tools.toml":          "[tools.run_python]\nname = \"run_shell\"\n[tools.run_code]\ndescription = \"x\"\n[tools.mytool.constraints]\nmax_file_size = \"big\"\n",
				"config/execution.toml":      "[sandbox]\ntimeout_seconds = 100000\n",
				"config/environments/t.toml": "[sandbox.resources]\ncpu_limit = 5000\n",
				"agents/a/agent.toml":        "extends = \"t\"\n[metadata]\nagent_id = \"b\"\n[sandbox]\nmode = \"dockr\"\n",
				"agents/a/.env":              "OK=1\nnot a line\n1BAD=x\n",
			},
			agent: "a",
			sets:  []string{"logging.level=loud"},
			count: 10,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, ok := tt.files["agents/a/agent.toml"]; !ok {
				tt.files["agents/a/agent.toml"] = ""
			}
			opts := Options{FS: tree(tt.files), Dir: "cfg", AgentID: tt.agent, Sets: tt.sets, Env: env("HOME", "/root")}
			var err error
			if tt.all {
				_, err = Validate(opts)
			} else {
				_, err = Load(opts)
			}
			if err == nil {
				t.Fatal("no error")
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("not ErrInvalid: %v", err)
			}
			if n := len(Errors(err)); n != tt.count {
				t.Errorf("%d errors, want %d:\n%v", n, tt.count, err)
			}
			golden(t, "errors/"+tt.name+".err", err.Error()+"\n")
		})
	}
}
