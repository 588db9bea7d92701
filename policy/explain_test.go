package policy

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestDecisionText(t *testing.T) {
	r := seedRules()
	tests := []struct {
		name       string
		call       Call
		line       string
		model      []string // substrings the model text must hold
		modelLacks []string
	}{
		{
			name: "blocked path",
			call: Call{Tool: "write_file", Paths: []string{".env"}},
			line: `deny write_file by tools.read_file.constraints.blocked_paths "**/.env": .env is protected by the operator: the file tools may not read, write, delete or list it`,
			model: []string{`write_file denied by blocked_paths "**/.env" (operator policy): .env is protected`,
				"Only the operator can change this, in the configuration key tools.read_file.constraints.blocked_paths."},
			modelLacks: []string{"guard"},
		},
		{
			name:  "guard",
			call:  Call{Tool: "run_shell", Command: "chmod 777 f"},
			line:  `deny run_shell by tools.run_shell.constraints.blocked_commands "chmod 777": the command matches the blocked pattern "chmod 777" [guard]`,
			model: []string{`run_shell denied by blocked_commands "chmod 777" (operator policy)`, "guard in front of the sandbox, not its boundary"},
		},
		{
			name:       "built-in check",
			call:       Call{Tool: "read_file", Paths: []string{"../x"}},
			line:       `deny read_file by workspace: path "../x" is outside /workspace; the file tools only reach /workspace`,
			model:      []string{`read_file denied by vial's workspace check: path "../x" is outside /workspace`},
			modelLacks: []string{"operator"},
		},
		{
			name:  "ask",
			call:  Call{Tool: "write_file", Paths: []string{"x"}},
			line:  `ask write_file by tools.require_confirmation "write_file": the operator requires a human to approve every write_file call`,
			model: []string{`write_file needs a human's approval (tools.require_confirmation "write_file")`},
		},
		{
			name: "allow",
			call: Call{Tool: "list_directory"},
			line: `allow list_directory by tools.auto_approve_patterns "list_*": list_directory is approved without asking`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := r.Decide(tt.call)
			if got := d.String(); got != tt.line {
				t.Errorf("String:\n got %s\nwant %s", got, tt.line)
			}
			if strings.Contains(d.String(), "\n") {
				t.Errorf("String is not one line")
			}
			m := d.ModelText()
			for _, s := range tt.model {
				if !strings.Contains(m, s) {
					t.Errorf("ModelText lacks %q:\n%s", s, m)
				}
			}
			for _, s := range tt.modelLacks {
				if strings.Contains(m, s) {
					t.Errorf("ModelText holds %q:\n%s", s, m)
				}
			}
		})
	}
	if got := (Decision{}).ModelText(); got != "the call denied." {
		t.Errorf("zero decision: %q", got)
	}
	warn := &Rules{Tools: map[string]ToolRules{"run_code": {Enabled: true}}, Dangerous: DangerousPatterns{Mode: DangerWarn}}
	d := warn.Decide(Call{Tool: "run_code", Code: "import socket"})
	if !strings.Contains(d.ModelText(), `dangerous pattern "socket"`) || !strings.Contains(d.String(), "1 notice") {
		t.Errorf("notices not shown: %s / %s", d, d.ModelText())
	}
}

func TestEffectText(t *testing.T) {
	b, err := json.Marshal(map[string]Effect{"a": Allow, "d": Deny, "q": Ask})
	if err != nil || string(b) != `{"a":"allow","d":"deny","q":"ask"}` {
		t.Errorf("got %s, %v", b, err)
	}
	if Effect(7).String() != "effect(7)" {
		t.Errorf("got %s", Effect(7))
	}
}

// TestDecisionOneLine: text from the call cannot break the log line.
func TestDecisionOneLine(t *testing.T) {
	r := seedRules()
	for _, c := range []Call{
		{Tool: "read_file", Paths: []string{"a\n.env"}, Size: 1},
		{Tool: "read_file", Paths: []string{"x/\ndeny everything/.env"}},
		{Tool: "evil\ntool"},
		{Tool: "run_code", Code: "__import__('subprocess\\nfake')"},
	} {
		d := r.Decide(c)
		if s := d.String(); strings.ContainsAny(s, "\n\r") {
			t.Errorf("String holds a line break: %q", s)
		}
		if strings.ContainsAny(d.Reason, "\n\r") {
			t.Errorf("Reason holds a line break: %q", d.Reason)
		}
	}
}
