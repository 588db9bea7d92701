package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/pelletier/go-toml/v2"

	"github.com/vial-run/vial/api"
	"github.com/vial-run/vial/service"
)

// The tests of every endpoint against the seed's example tree
// (config/testdata/seed), through the listener vial serve --http runs.

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("decoding %s: %v", body, err)
	}
	return v
}

func valueOf(t *testing.T, values []api.Value, key string) api.Value {
	t.Helper()
	for _, v := range values {
		if v.Key == key {
			return v
		}
	}
	t.Fatalf("no value %s", key)
	return api.Value{}
}

// goldenExplain reads config/testdata/golden/research-assistant.explain —
// `vial config show --explain` of the seed's agent, the documented merge —
// as key → (value as JSON, "layer [name], file:line").
func goldenExplain(t *testing.T) map[string][2]string {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "config", "testdata", "golden", "research-assistant.explain"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][2]string{}
	comment := regexp.MustCompile(`^(.*?)  # (.*?), (?:testdata/seed/)?(\S+?):(\d+):\d+(?: \(secret\))?$`)
	section, pending := "", ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			continue
		case strings.HasPrefix(line, "[") && pending == "":
			section = strings.Trim(line, "[]")
			continue
		case pending != "" || strings.HasSuffix(line, "= ["):
			pending += strings.TrimSpace(line)
			if !strings.HasPrefix(line, "]") {
				continue
			}
			line, pending = pending, ""
		}
		m := comment.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("golden line %q", line)
		}
		key, val, _ := strings.Cut(m[1], " = ")
		var doc map[string]any
		if err := toml.Unmarshal([]byte("v = "+strings.ReplaceAll(val, ",]", "]")), &doc); err != nil {
			t.Fatalf("golden value %q: %v", val, err)
		}
		j, _ := json.Marshal(doc["v"])
		out[section+"."+key] = [2]string{string(j), m[2] + ", " + m[3] + ":" + m[4]}
	}
	return out
}

// TestSeedResolve is the seed's first worked example: GET
// /agents/research-assistant/config?resolve=true gives the merged
// configuration with each value's layer and file:line, as `vial config
// show --explain` documents it, and the secret masked.
func TestSeedResolve(t *testing.T) {
	h := newOperatorHarness(t, false)
	res, body := h.call(t, "GET", "/api/v1/execution/agents/research-assistant/config?resolve=true", "", "")
	if res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, body)
	}
	if strings.Contains(body, testSecret) {
		t.Fatal("the secret reached the answer")
	}
	r := decode[api.Resolved](t, body)
	wantChain := []string{"builtin:defaults.toml", "config/mcp.toml", "config/execution.toml", "config/environments/python-dev.toml", "agents/research-assistant/agent.toml"}
	if fmt.Sprint(r.Chain) != fmt.Sprint(wantChain) || r.Template != "python-dev" || r.AgentID != "research-assistant" {
		t.Errorf("chain %v template %q agent %q", r.Chain, r.Template, r.AgentID)
	}
	golden := goldenExplain(t)
	if len(golden) < 60 {
		t.Fatalf("read only %d golden values", len(golden))
	}
	got := map[string]api.Value{}
	for _, v := range r.Values {
		got[v.Key] = v
	}
	for key, want := range golden {
		v, ok := got[key]
		if !ok {
			t.Errorf("%s: missing", key)
			continue
		}
		j, _ := json.Marshal(v.Value)
		from := v.Layer
		if v.Name != "" {
			from += " " + v.Name
		}
		from += ", " + v.File + ":" + fmt.Sprint(v.Line)
		if string(j) != want[0] || from != want[1] {
			t.Errorf("%s = %s from %s\n   want %s from %s", key, j, from, want[0], want[1])
		}
	}
	if len(got) != len(golden) {
		t.Errorf("%d values, the golden file has %d", len(got), len(golden))
	}
	// The seed's own words for the example values.
	for key, want := range map[string]string{
		"sandbox.timeout_seconds":         "120 agent agents/research-assistant/agent.toml:17:1",
		"sandbox.resources.memory_limit":  `"1g" agent agents/research-assistant/agent.toml:20:1`,
		"sandbox.resources.cpu_limit":     "2.0 template config/environments/python-dev.toml:29:1",
		"sandbox.mode":                    `"docker" system config/execution.toml:14:1`,
		"shell.env.SEARCH_API_KEY":        `"********" agent agents/research-assistant/agent.toml:34:1`,
		"sandbox.resources.pids_limit":    "256 built-in builtin:defaults.toml:14:1",
		"mcp.servers.browser.url":         `"http://localhost:3001" agent agents/research-assistant/agent.toml:55:13`,
		"sandbox.network.allowed_hosts":   `["api.search.com", "arxiv.org", "github.com"] agent agents/research-assistant/agent.toml:24:1`,
		"mcp.servers.browser.api_key_env": `"BROWSER_MCP_KEY" system config/mcp.toml:42:1`,
	} {
		v := valueOf(t, r.Values, key)
		if s := fmt.Sprintf("%s %s %s:%d:%d", v.Text, v.Layer, v.File, v.Line, v.Col); s != want {
			t.Errorf("%s: %s\n   want %s", key, s, want)
		}
	}
	if v := valueOf(t, r.Values, "shell.env.SEARCH_API_KEY"); !v.Secret || v.Value != api.Masked {
		t.Errorf("secret: %+v", v)
	}
	if !strings.Contains(r.TOML, "timeout_seconds = 120\n") || !strings.Contains(r.TOML, `SEARCH_API_KEY = "********"`) {
		t.Errorf("toml:\n%s", r.TOML)
	}
	if r.Config["sandbox"].(map[string]any)["timeout_seconds"] != float64(120) {
		t.Errorf("config: %v", r.Config["sandbox"])
	}

	// Without resolve: the file as written, with its sha256 as ETag.
	res, body = h.call(t, "GET", "/api/v1/execution/agents/research-assistant/config", "", "")
	f := decode[api.AgentFile](t, body)
	disk, _ := os.ReadFile(filepath.Join(h.ConfigDir, "agents", "research-assistant", "agent.toml"))
	if res.StatusCode != 200 || f.TOML != string(disk) || res.Header.Get("ETag") != `"`+f.SHA256+`"` || f.File != "agents/research-assistant/agent.toml" {
		t.Errorf("%d %v %+v", res.StatusCode, res.Header, f)
	}
}

// TestSeedPreview is the seed's second worked example: the runtime
// overrides timeout_seconds = 180 and DEBUG = "true" merged over
// research-assistant, shown as runtime values, nothing else changed.
func TestSeedPreview(t *testing.T) {
	h := newOperatorHarness(t, false)
	body := `{
  "sandbox": {
    "timeout_seconds": 180
  },
  "shell": {
    "env": {
      "DEBUG": "true"
    }
  }
}`
	res, out := h.call(t, "POST", "/api/v1/execution/agents/research-assistant/preview", "application/json", body)
	if res.StatusCode != 200 {
		t.Fatalf("%d %s", res.StatusCode, out)
	}
	p := decode[api.Preview](t, out)
	if v := valueOf(t, p.Values, "sandbox.timeout_seconds"); v.Value != float64(180) || v.Layer != "runtime" || v.File != "runtime overrides" {
		t.Errorf("timeout: %+v", v)
	}
	if v := valueOf(t, p.Values, "shell.env.DEBUG"); v.Value != "true" || v.Layer != "runtime" {
		t.Errorf("DEBUG: %+v", v)
	}
	if v := valueOf(t, p.Values, "sandbox.resources.memory_limit"); v.Value != "1g" || v.Layer != "agent" {
		t.Errorf("memory (untouched): %+v", v)
	}
	if got := fmt.Sprint(p.Changes); got != "[{sandbox.timeout_seconds 120 180} {shell.env.DEBUG <nil> true}]" {
		t.Errorf("changes %s", got)
	}
	if strings.Contains(out, testSecret) {
		t.Error("the secret reached the answer")
	}
	// Nothing was written.
	disk, _ := os.ReadFile(filepath.Join(h.ConfigDir, "agents", "research-assistant", "agent.toml"))
	if strings.Contains(string(disk), "180") || strings.Contains(string(disk), "DEBUG") {
		t.Error("the preview changed the file")
	}
	// Overrides are checked like any layer; a bad one is 422 and names
	// the key.
	res, out = h.call(t, "POST", "/api/v1/execution/agents/research-assistant/preview", "application/json", `{"sandbox": {"timeout_seconds": 0, "nope": 1}}`)
	if res.StatusCode != 422 || !strings.Contains(out, "sandbox.timeout_seconds: 0 is out of range") || !strings.Contains(out, `unknown key \"nope\"`) {
		t.Errorf("bad overrides: %d %s", res.StatusCode, out)
	}
	// A secret interpolated into an override is masked too.
	res, out = h.call(t, "POST", "/api/v1/execution/agents/research-assistant/preview", "application/json", `{"shell": {"env": {"X_TOKEN": "${SEARCH_API_KEY}"}}}`)
	if res.StatusCode != 200 || strings.Contains(out, testSecret) {
		t.Errorf("interpolated override: %d, secret shown: %v", res.StatusCode, strings.Contains(out, testSecret))
	}
}

// TestSeedValidate is the seed's third worked example, and the answers to
// bodies that do not validate: 422 with every problem at file:line:col.
func TestSeedValidate(t *testing.T) {
	h := newOperatorHarness(t, false)
	for _, tc := range []struct {
		name, query, ctype, body string
		status                   int
		problems                 []string // "file:line:col: message" prefixes
	}{
		{name: "the seed's example", ctype: "application/json", body: `{
  "sandbox": {
    "mode": "docker",
    "timeout_seconds": 60
  }
}`, status: 200},
		{name: "the same as TOML", ctype: "application/toml", body: "[sandbox]\nmode = \"docker\"\ntimeout_seconds = 60\n", status: 200},
		{name: "sniffed without a content type", body: `{"sandbox": {"mode": "docker", "timeout_seconds": 60}}`, status: 200},
		{name: "broken TOML", ctype: "application/toml", body: "[sandbox\ntimeout_seconds = 60\n", status: 422,
			problems: []string{"agents/new-agent/agent.toml:1:9: expected ']' to close table name"}},
		{name: "typos and bad values at their lines", query: "?agent=research-assistant", ctype: "application/toml",
			body: "[metadata]\nagent_id = \"research-assistant\"\nextends = \"pyhton-dev\"\n\n[sandbox]\ntimout_seconds = 120\nmode = \"remote\"\n", status: 422,
			problems: []string{
				`agents/research-assistant/agent.toml:3:11: extends: unknown template "pyhton-dev", did you mean "python-dev"?`,
				`agents/research-assistant/agent.toml:6:1: unknown key "timout_seconds" in [sandbox], did you mean "timeout_seconds"?`,
				`agents/research-assistant/agent.toml:7:8: sandbox.mode: "remote" is not a choice`,
			}},
		{name: "JSON problems at the JSON key", ctype: "application/json", body: "{\n  \"sandbox\": {\n    \"mode\": \"docker\",\n    \"timeout_seconds\": \"60\"\n  }\n}", status: 422,
			problems: []string{"request body:4:5: sandbox.timeout_seconds must be an integer, not a string"}},
		{name: "a template body", query: "?template=python-dev", ctype: "application/toml", body: "[sandbox.resources]\ncpu_limit = 5000\n", status: 422,
			problems: []string{"config/environments/python-dev.toml:2:13: sandbox.resources.cpu_limit: 5000 is out of range"}},
		{name: "a secret never in a message", query: "?agent=research-assistant", ctype: "application/toml", body: "[sandbox]\nmode = \"${SEARCH_API_KEY}\"\n", status: 422,
			problems: []string{`agents/research-assistant/agent.toml:2:8: sandbox.mode: "********" is not a choice`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res, out := h.call(t, "POST", "/api/v1/execution/validate"+tc.query, tc.ctype, tc.body)
			if res.StatusCode != tc.status {
				t.Fatalf("%d, want %d: %s", res.StatusCode, tc.status, out)
			}
			if strings.Contains(out, testSecret) {
				t.Fatal("the secret reached the answer")
			}
			v := decode[api.Validation](t, out)
			if v.Valid != (tc.status == 200) || len(v.Problems) != len(tc.problems) {
				t.Fatalf("valid %v, %d problems: %s", v.Valid, len(v.Problems), out)
			}
			for i, p := range v.Problems {
				if !strings.HasPrefix(p.String(), tc.problems[i]) {
					t.Errorf("problem %d: %s\n   want %s...", i, p, tc.problems[i])
				}
			}
		})
	}
}

// TestAgentWrites: PUT validates before it writes, writes atomically and
// keeps the previous file; a body that fails validation leaves the file
// untouched.
func TestAgentWrites(t *testing.T) {
	h := newOperatorHarness(t, true)
	path := filepath.Join(h.ConfigDir, "agents", "research-assistant", "agent.toml")
	before, _ := os.ReadFile(path)
	st0, _ := os.Stat(path)
	put := func(body string, hdr ...string) (int, string) {
		res, out := h.call(t, "PUT", "/api/v1/execution/agents/research-assistant/config", "application/toml", body, hdr...)
		return res.StatusCode, out
	}

	typo := strings.Replace(string(before), "timeout_seconds = 120", "timout_seconds = 150", 1)
	code, out := put(typo)
	if code != 422 || !strings.Contains(out, `"line": 17`) || !strings.Contains(out, "timout_seconds") {
		t.Fatalf("typo: %d %s", code, out)
	}
	after, _ := os.ReadFile(path)
	st1, _ := os.Stat(path)
	if string(after) != string(before) || !st1.ModTime().Equal(st0.ModTime()) {
		t.Fatal("a body that failed validation changed the file")
	}
	if _, err := os.Stat(path + ".bak"); err == nil {
		t.Fatal("a failed write left a backup")
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 1 {
		t.Fatalf("left files behind: %v", entries)
	}
	if code, out := put("[sandbox\n"); code != 422 || !strings.Contains(out, `"line": 1`) {
		t.Errorf("broken TOML: %d %s", code, out)
	}

	// A stale If-Match is refused.
	if code, out := put(string(before), "If-Match", `"0000"`); code != 412 {
		t.Errorf("stale If-Match: %d %s", code, out)
	}

	good := strings.Replace(string(before), "timeout_seconds = 120", "timeout_seconds = 150", 1)
	code, out = put(good, "If-Match", `"`+sha256Hex(before)+`"`)
	if code != 200 {
		t.Fatalf("good: %d %s", code, out)
	}
	f := decode[api.AgentFile](t, out)
	if disk, _ := os.ReadFile(path); string(disk) != good || f.SHA256 != sha256Hex([]byte(good)) || f.Backup != "agents/research-assistant/agent.toml.bak" {
		t.Errorf("written %q %+v", disk, f)
	}
	if bak, _ := os.ReadFile(path + ".bak"); string(bak) != string(before) {
		t.Error("the previous file was not kept")
	}
	if st, _ := os.Stat(path); st.Mode().Perm() != st0.Mode().Perm() {
		t.Errorf("mode %v, was %v", st.Mode(), st0.Mode())
	}
	_, body := h.call(t, "GET", "/api/v1/execution/agents/research-assistant/config?resolve=true", "", "")
	if v := valueOf(t, decode[api.Resolved](t, body).Values, "sandbox.timeout_seconds"); v.Value != float64(150) || v.Line != 17 {
		t.Errorf("resolved after the write: %+v", v)
	}
	if entries, _ := os.ReadDir(filepath.Dir(path)); len(entries) != 2 {
		t.Errorf("files: %v", entries)
	}
	// An agent that does not exist is not created.
	if res, out := h.call(t, "PUT", "/api/v1/execution/agents/nobody/config", "application/toml", good); res.StatusCode != 404 {
		t.Errorf("unknown agent: %d %s", res.StatusCode, out)
	}
	if _, err := os.Stat(filepath.Join(h.ConfigDir, "agents", "nobody")); err == nil {
		t.Error("PUT created an agent")
	}
}

func TestAgentWritesNeedTheFlag(t *testing.T) {
	h := newOperatorHarness(t, false)
	res, out := h.call(t, "PUT", "/api/v1/execution/agents/research-assistant/config", "application/toml", "[sandbox]\ntimeout_seconds = 5\n")
	if res.StatusCode != 403 || !strings.Contains(out, "--api-allow-writes") {
		t.Errorf("%d %s", res.StatusCode, out)
	}
}

// TestOperatorBadInput is the list of bad input, on every
// endpoint it applies to.
func TestOperatorBadInput(t *testing.T) {
	h := newOperatorHarness(t, true)
	long := strings.Repeat("a", 300)
	for _, tc := range []struct {
		method, path, ctype, body string
		status                    int
	}{
		{"GET", "/api/v1/execution/agents/nobody/config", "", "", 404},
		{"GET", "/api/v1/execution/agents/nobody/config?resolve=true", "", "", 404},
		{"POST", "/api/v1/execution/agents/nobody/preview", "application/json", "{}", 404},
		{"PUT", "/api/v1/execution/agents/nobody/config", "application/toml", "", 404},
		{"GET", "/api/v1/execution/templates/nothing", "", "", 404},
		{"GET", "/api/v1/execution/tools?agent=nobody", "", "", 404},
		{"GET", "/api/v1/execution/mcp/servers?agent=nobody", "", "", 404},
		{"DELETE", "/api/v1/contexts/ctx-nothing", "", "", 404},
		{"GET", "/api/v1/execution/agents/..%2Fx/config", "", "", 400},
		{"GET", "/api/v1/execution/agents/..%2F..%2Fetc/config?resolve=true", "", "", 400},
		{"GET", "/api/v1/execution/agents/x%00/config", "", "", 400},
		{"GET", "/api/v1/execution/agents/" + long + "/config", "", "", 400},
		{"PUT", "/api/v1/execution/agents/..%2Fx/config", "application/toml", "[sandbox]\n", 400},
		{"POST", "/api/v1/execution/agents/%00/preview", "application/json", "{}", 400},
		{"GET", "/api/v1/execution/templates/..%2F..%2Fagents%2Fresearch-assistant%2Fagent", "", "", 400},
		{"POST", "/api/v1/execution/validate?agent=..%2Fx", "application/toml", "[sandbox]\n", 400},
		{"DELETE", "/api/v1/contexts/" + long, "", "", 400},
		{"POST", "/api/v1/execution/validate", "application/toml", "[sandbox\n", 422},
		{"POST", "/api/v1/execution/validate", "application/toml", strings.Repeat("#", 2<<20), 413},
	} {
		res, out := h.call(t, tc.method, tc.path, tc.ctype, tc.body)
		if res.StatusCode != tc.status {
			t.Errorf("%s %.80s: %d, want %d: %.300s", tc.method, tc.path, res.StatusCode, tc.status, out)
		}
	}
	// Without a token, or with the MCP clients' token: 401, on the API
	// and on the page's data alike.
	for _, auth := range []string{"", "Bearer " + testMCPToken} {
		res, _ := h.call(t, "GET", "/api/v1/execution/templates", "", "", "Authorization", auth)
		if res.StatusCode != 401 {
			t.Errorf("Authorization %q: %d", auth, res.StatusCode)
		}
	}
	// And the operator token opens nothing on /mcp.
	res, _ := h.call(t, "POST", "/mcp", "application/json", `{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	if res.StatusCode != 401 {
		t.Errorf("operator token on /mcp: %d", res.StatusCode)
	}
	// The server keeps serving.
	if res, _ := h.call(t, "GET", "/api/v1/execution/templates", "", ""); res.StatusCode != 200 {
		t.Errorf("after the bad input: %d", res.StatusCode)
	}
}

func TestSeedTemplatesToolsServers(t *testing.T) {
	h := newOperatorHarness(t, false)
	_, out := h.call(t, "GET", "/api/v1/execution/templates", "", "")
	ts := decode[struct{ Templates []api.Template }](t, out).Templates
	names := []string{}
	for _, tp := range ts {
		names = append(names, tp.Name+"="+tp.File)
	}
	if want := "[data-science=builtin:config/environments/data-science.toml local-dev=config/environments/local-dev.toml minimal=builtin:config/environments/minimal.toml node-dev=builtin:config/environments/node-dev.toml python-dev=config/environments/python-dev.toml]"; fmt.Sprint(names) != want {
		t.Errorf("templates %v", names)
	}

	_, out = h.call(t, "GET", "/api/v1/execution/templates/python-dev", "", "")
	td := decode[api.TemplateDetail](t, out)
	disk, _ := os.ReadFile(filepath.Join(h.ConfigDir, "config", "environments", "python-dev.toml"))
	if td.TOML != string(disk) || td.Extends != "" || valueOf(t, td.Resolved.Values, "sandbox.timeout_seconds").Value != float64(60) {
		t.Errorf("python-dev: %+v", td.Template)
	}
	_, out = h.call(t, "GET", "/api/v1/execution/templates/minimal", "", "")
	if td := decode[api.TemplateDetail](t, out); td.TOML != "" || td.Resolved == nil {
		t.Errorf("built-in minimal: %s", out)
	}

	_, out = h.call(t, "GET", "/api/v1/execution/agents", "", "")
	as := decode[struct{ Agents []api.Agent }](t, out).Agents
	if len(as) != 3 || as[2].ID != "research-assistant" || as[2].Extends != "python-dev" || as[2].Name != "研究助手" || as[2].Problems != 0 {
		t.Errorf("agents %+v", as)
	}

	_, out = h.call(t, "GET", "/api/v1/execution/tools?agent=research-assistant", "", "")
	tools := decode[struct{ Tools []api.Tool }](t, out).Tools
	byName := map[string]api.Tool{}
	for _, tl := range tools {
		byName[tl.Name] = tl
	}
	if w := byName["write_file"]; !w.Enabled || !w.ConfirmationRequired || !w.Constraints.WorkspaceOnly || w.Constraints.MaxFileSize != 5<<20 {
		t.Errorf("write_file %+v", w)
	}
	if r := byName["run_code"]; fmt.Sprint(r.Aliases) != "[execute_python run_python]" || !r.Implemented {
		t.Errorf("run_code %+v", r)
	}
	if w := byName["web_search"]; w.Implemented || w.Config["provider"] != "tavily" {
		t.Errorf("web_search %+v", w)
	}

	t.Setenv("BROWSER_MCP_KEY", "bk-very-secret-key")
	_, out = h.call(t, "GET", "/api/v1/execution/mcp/servers?agent=research-assistant", "", "")
	if strings.Contains(out, "bk-very-secret-key") {
		t.Fatal("an MCP server's API key reached the answer")
	}
	servers := decode[struct{ Servers []api.MCPServer }](t, out).Servers
	if len(servers) != 3 || servers[0].Name != "browser" || !servers[0].Enabled || !servers[0].APIKeySet ||
		servers[0].From != "agent research-assistant, agents/research-assistant/agent.toml:55:13" {
		t.Errorf("servers %+v", servers)
	}
}

// TestOperatorContextsAndApprovals: the operator sees and stops every
// session's contexts, and answers pending approvals.
func TestOperatorContextsAndApprovals(t *testing.T) {
	h := newOperatorHarness(t, false)
	sess, err := h.Svc.OpenSession(service.SessionInfo{ID: "s-model", Transport: "http", Client: "claude-code/2.1"})
	if err != nil {
		t.Fatal(err)
	}
	c, err := sess.CreateContext(context.Background(), service.CreateRequest{Language: service.Python, Name: "analysis"})
	if err != nil {
		t.Fatal(err)
	}
	_, out := h.call(t, "GET", "/api/v1/contexts", "", "")
	if cs := decode[struct{ Contexts []api.Context }](t, out).Contexts; len(cs) != 1 || cs[0].ID != c.ID || cs[0].Session != "s-model" || cs[0].Name != "analysis" {
		t.Errorf("contexts %s", out)
	}
	if res, out := h.call(t, "DELETE", "/api/v1/contexts/"+c.ID, "", ""); res.StatusCode != 200 {
		t.Errorf("stop: %d %s", res.StatusCode, out)
	}
	if len(sess.ListContexts()) != 0 {
		t.Error("the context survived")
	}

	id, done := pendingWrite(t, h.Svc, sess, "report.md", "hello")
	_, out = h.call(t, "GET", "/api/v1/approvals", "", "")
	if !strings.Contains(out, `"tool": "write_file"`) || !strings.Contains(out, "/workspace/report.md") {
		t.Errorf("approvals %s", out)
	}
	if res, out := h.call(t, "POST", "/api/v1/approvals/"+id+"/approve", "", "", "Sec-Fetch-Site", "cross-site"); res.StatusCode != 403 {
		t.Errorf("cross-site approve: %d %s", res.StatusCode, out)
	}
	if res, out := h.call(t, "POST", "/api/v1/approvals/"+id+"/approve", "", ""); res.StatusCode != 200 {
		t.Errorf("approve: %d %s", res.StatusCode, out)
	}
	if err := <-done; err != nil {
		t.Errorf("the approved write failed: %v", err)
	}
	fc, err := sess.ReadFile(context.Background(), service.ReadRequest{Path: "report.md"})
	if err != nil || string(fc.Data) != "hello" {
		t.Errorf("the approved write: %q %v", fc.Data, err)
	}
}

func TestOperatorMetricsAuditImages(t *testing.T) {
	h := newOperatorHarness(t, false)
	res, out := h.call(t, "GET", "/api/v1/metrics", "", "")
	if res.StatusCode != 200 || !strings.Contains(out, "vial_calls_total") {
		t.Errorf("metrics %d %s", res.StatusCode, out)
	}
	res, out = h.call(t, "GET", "/api/v1/audit?n=2", "", "")
	if res.StatusCode != 200 || len(decode[struct{ Entries []any }](t, out).Entries) != 2 {
		t.Errorf("audit %d %s", res.StatusCode, out)
	}
	res, out = h.call(t, "POST", "/api/v1/images/builds", "application/json", `{"recipe": "python"}`)
	if res.StatusCode != 202 {
		t.Fatalf("build %d %s", res.StatusCode, out)
	}
	id := decode[struct{ ID string }](t, out).ID
	res, out = h.call(t, "GET", "/api/v1/images/builds/"+id+"/events", "", "")
	if res.StatusCode != 200 || strings.Count(out, "event: progress") != 5 || !strings.Contains(out, `"state":"succeeded"`) {
		t.Errorf("events %d %s", res.StatusCode, out)
	}
	_, out = h.call(t, "GET", "/api/v1/images", "", "")
	if !strings.Contains(out, `"name": "python"`) {
		t.Errorf("images %s", out)
	}
}

// TestOperatorToken: the operator's token comes from a file, the
// environment or is generated (0600 under the state directory), and is
// never the MCP clients' token.
func TestOperatorToken(t *testing.T) {
	state := t.TempDir()
	var stderr strings.Builder
	g := &globals{StateDir: state, Stderr: &stderr}
	t.Setenv("VIAL_ADMIN_TOKEN", "")
	tok, err := operatorToken(g, "127.0.0.1:8765", "", testMCPToken)
	if err != nil || len(tok) != 64 {
		t.Fatalf("generated: %q %v", tok, err)
	}
	st, err := os.Stat(filepath.Join(state, "admin-token"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("token file: %v %v", st, err)
	}
	if b, _ := os.ReadFile(filepath.Join(state, "admin-token")); strings.TrimSpace(string(b)) != tok || !strings.Contains(stderr.String(), "http://127.0.0.1:8765/") {
		t.Errorf("file %q, stderr %q", b, stderr.String())
	}
	t.Setenv("VIAL_ADMIN_TOKEN", "from-the-environment-0123456789")
	if tok, err := operatorToken(g, "x", "", testMCPToken); err != nil || tok != "from-the-environment-0123456789" {
		t.Errorf("env: %q %v", tok, err)
	}
	file := filepath.Join(t.TempDir(), "tok")
	os.WriteFile(file, []byte(testMCPToken+"\n"), 0o600)
	if _, err := operatorToken(g, "x", file, testMCPToken); err == nil || !strings.Contains(err.Error(), "must differ") {
		t.Errorf("the MCP token as operator token: %v", err)
	}
	os.WriteFile(file, []byte("short\n"), 0o600)
	if _, err := operatorToken(g, "x", file, ""); err == nil {
		t.Error("a short token was accepted")
	}
}

// TestServeFlagsNeedHTTP: the page and API exist only on the HTTP
// listener; their flags without --http are a usage error.
func TestServeFlagsNeedHTTP(t *testing.T) {
	for _, args := range [][]string{{"--admin-token-file", "/x"}, {"--api-allow-writes"}} {
		var stderr strings.Builder
		g := &globals{StateDir: t.TempDir(), Stdout: &strings.Builder{}, Stderr: &stderr}
		if code := cmdServe(context.Background(), g, args); code != exitUsage || !strings.Contains(stderr.String(), "need --http") {
			t.Errorf("%v: %d %s", args, code, stderr.String())
		}
	}
}
