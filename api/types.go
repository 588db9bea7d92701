package api

import (
	"context"
	"io"
	"time"

	"github.com/vial-run/vial/service"
)

// Config is the layered configuration as the API serves it. cmd/vial
// implements it over package config. Every method is safe for concurrent
// use. Errors carry errdefs classes: an unknown agent or template is
// errdefs.ErrNotFound, a configuration that does not validate is a
// *ConfigError. Names reaching Config have passed ValidName.
//
// Secrets never leave Config: resolved values that hold one are masked
// (Masked), MCP servers' API keys are reported only as set or not, and
// messages are scrubbed of secret values.
type Config interface {
	// Templates lists the environment templates (config/environments and
	// the built-in ones), sorted by name.
	Templates(ctx context.Context) ([]Template, error)
	// Template describes one template: its file as written (if it is in
	// the configuration directory) and the system defaults resolved with
	// it.
	Template(ctx context.Context, name string) (*TemplateDetail, error)
	// Agents lists the agents (agents/ID/agent.toml), sorted by ID.
	Agents(ctx context.Context) ([]Agent, error)
	// AgentFile returns an agent's agent.toml as written.
	AgentFile(ctx context.Context, id string) (*AgentFile, error)
	// Resolve merges every layer for the agent, then overrides (level 4,
	// nil for none), and reports each value with the layer and
	// file:line:col it came from.
	Resolve(ctx context.Context, id string, overrides map[string]any) (*Resolved, error)
	// Validate checks body, TOML, as the file target names, together with
	// the rest of the configuration directory, and reports every problem.
	// A body that does not validate is not an error: Validation.Valid is
	// false.
	Validate(ctx context.Context, target ValidateTarget, body []byte) (*Validation, error)
	// WriteAgentFile validates body as the agent's agent.toml and, only if
	// it is valid, replaces the file atomically, keeping the previous one
	// as agent.toml.bak. ifMatch, if not "", must be the SHA256 of the
	// file being replaced (else errdefs.ErrFailedPrecondition: someone
	// else changed it). An invalid body is a *ConfigError and the file is
	// untouched.
	WriteAgentFile(ctx context.Context, id string, body []byte, ifMatch string) (*AgentFile, error)
	// Tools lists the tool definitions as the agent ("" for the system
	// defaults) sees them.
	Tools(ctx context.Context, agent string) ([]Tool, error)
	// MCPServers lists the downstream MCP servers the agent ("" for the
	// system defaults) would use.
	MCPServers(ctx context.Context, agent string) ([]MCPServer, error)
}

// Masked is what a secret value is shown as.
const Masked = "********"

// Template is one environment template.
type Template struct {
	Name        string   `json:"name"`
	Extends     string   `json:"extends,omitempty"`
	Description string   `json:"description,omitempty"`
	Tags        []string `json:"tags"`
	// File is where it is defined, relative to the configuration
	// directory, or "builtin:..." for a template compiled into vial.
	File string `json:"file"`
}

// TemplateDetail is a template with its content.
type TemplateDetail struct {
	Template
	// TOML is the file as written; "" for a built-in template.
	TOML string `json:"toml,omitempty"`
	// Resolved is the system defaults with this template (and what it
	// extends) over them: what an agent extending it starts from.
	Resolved *Resolved `json:"resolved"`
}

// Agent summarises one agent.
type Agent struct {
	ID          string `json:"id"`
	Name        string `json:"name,omitempty"`
	Description string `json:"description,omitempty"`
	Extends     string `json:"extends,omitempty"`
	File        string `json:"file"`
	// Problems counts the validation problems of its configuration; 0
	// when it resolves.
	Problems int `json:"problems"`
}

// AgentFile is an agent's agent.toml as written. Its SHA256 is also the
// ETag of GET and the If-Match of PUT.
type AgentFile struct {
	ID       string    `json:"id"`
	File     string    `json:"file"` // relative to the configuration directory
	TOML     string    `json:"toml"`
	SHA256   string    `json:"sha256"`
	Modified time.Time `json:"modified"`
	// Backup is the previous version's file after a write, "" otherwise.
	Backup string `json:"backup,omitempty"`
}

// Resolved is a merged configuration with the origin of every value.
type Resolved struct {
	AgentID  string `json:"agent_id,omitempty"`
	Template string `json:"template,omitempty"`
	// Chain lists the files merged, lowest layer first.
	Chain []string `json:"chain"`
	// Config is the merged configuration as nested objects, secrets
	// masked.
	Config map[string]any `json:"config"`
	// Values lists every leaf of Config with its origin.
	Values []Value `json:"values"`
	// TOML is the merged configuration as `vial config show` prints it,
	// secrets masked.
	TOML     string   `json:"toml"`
	Warnings []string `json:"warnings"`
}

// Value is one merged value and where it was set.
type Value struct {
	Key   string `json:"key"` // dotted, e.g. sandbox.timeout_seconds
	Value any    `json:"value"`
	// Text is the value as TOML writes it ("2.0", "[\"a\"]").
	Text string `json:"text"`
	// Layer is built-in, system, template, agent or runtime; Name the
	// template's or agent's name.
	Layer string `json:"layer"`
	Name  string `json:"name,omitempty"`
	File  string `json:"file"`
	Line  int    `json:"line,omitempty"`
	Col   int    `json:"col,omitempty"`
	// Secret marks a masked value.
	Secret bool `json:"secret,omitempty"`
}

// Preview is an agent's configuration with runtime overrides applied.
type Preview struct {
	Resolved
	// Changes lists the values the overrides changed (or added).
	Changes []Change `json:"changes"`
	// Overrides echoes what was applied.
	Overrides map[string]any `json:"overrides"`
}

// Change is one value changed by a preview's overrides.
type Change struct {
	Key  string `json:"key"`
	From any    `json:"from"` // nil when the key was not set before
	To   any    `json:"to"`
}

// ValidateTarget names the file a body is validated as.
type ValidateTarget struct {
	// Agent validates the body as agents/Agent/agent.toml (an agent that
	// does not exist yet is fine); with neither set, as a new agent's
	// file.
	Agent string
	// Template validates it as config/environments/Template.toml.
	Template string
}

// Validation is the outcome of validating a body.
type Validation struct {
	Valid bool `json:"valid"`
	// File is how the body's file is named in Problems.
	File     string    `json:"file"`
	Problems []Problem `json:"problems"`
	Warnings []string  `json:"warnings"`
}

// Problem is one validation problem at one place. Line and Col count
// from 1; 0 means the whole file (a missing file, an override).
type Problem struct {
	File    string `json:"file"`
	Line    int    `json:"line,omitempty"`
	Col     int    `json:"col,omitempty"`
	Message string `json:"message"`
	// Path is the dotted key of a JSON body's member the problem is
	// about, when the body was JSON.
	Path string `json:"path,omitempty"`
}

// Tool is one tool definition as an agent sees it.
type Tool struct {
	Name                 string           `json:"name"`
	Aliases              []string         `json:"aliases"`
	Description          string           `json:"description"`
	Category             string           `json:"category"`
	Builtin              bool             `json:"builtin"`
	Implemented          bool             `json:"implemented"`
	Enabled              bool             `json:"enabled"`
	EnabledByDefault     bool             `json:"enabled_by_default"`
	RequiresConfirmation bool             `json:"requires_confirmation"` // the definition's default
	ConfirmationRequired bool             `json:"confirmation_required"` // what applies to the agent
	Parameters           map[string]Param `json:"parameters"`
	Constraints          Constraints      `json:"constraints"`
	Config               map[string]any   `json:"config"`
}

// Param describes a tool parameter.
type Param struct {
	Type        string `json:"type"`
	Description string `json:"description,omitempty"`
	Required    bool   `json:"required"`
	Default     any    `json:"default,omitempty"`
	Enum        []any  `json:"enum,omitempty"`
}

// Constraints are a tool's policy limits (see docs/policy.md).
type Constraints struct {
	MaxFileSize        int64    `json:"max_file_size,omitempty"`
	BlockedPaths       []string `json:"blocked_paths,omitempty"`
	WorkspaceOnly      bool     `json:"workspace_only,omitempty"`
	BlockedImports     []string `json:"blocked_imports,omitempty"`
	BlockedCommands    []string `json:"blocked_commands,omitempty"`
	BlockedHosts       []string `json:"blocked_hosts,omitempty"`
	AutoApproveMethods []string `json:"auto_approve_methods,omitempty"`
}

// MCPServer is one downstream MCP server. Its API key is never shown:
// APIKeySet says whether api_key_env names a variable that is set.
type MCPServer struct {
	Name        string         `json:"name"`
	Title       string         `json:"title,omitempty"`
	Description string         `json:"description,omitempty"`
	URL         string         `json:"url"`
	Transport   string         `json:"transport"`
	Enabled     bool           `json:"enabled"`
	AutoStart   bool           `json:"auto_start"`
	Sandboxed   bool           `json:"sandboxed"`
	APIKeyEnv   string         `json:"api_key_env,omitempty"`
	APIKeySet   bool           `json:"api_key_set"`
	Config      map[string]any `json:"config"`
	// From is where its url was set (layer, file:line:col).
	From string `json:"from"`
}

// Contexts is the operator's view of the live contexts of every session.
// *service.Service implements it.
type Contexts interface {
	Contexts() []service.ContextInfo
	StopContext(id string) error
}

// Context is one live context as the API shows it.
type Context struct {
	ID          string    `json:"id"`
	Name        string    `json:"name,omitempty"`
	Language    string    `json:"language"`
	Environment string    `json:"environment,omitempty"`
	Session     string    `json:"session"`
	Default     bool      `json:"default"`
	Dead        bool      `json:"dead"`
	Busy        bool      `json:"busy"`
	Created     time.Time `json:"created"`
	LastUsed    time.Time `json:"last_used"`
}

// Approvals is the queue of tool calls waiting for a person. The service
// implements it; the API is the out-of-band channel through which an
// operator answers for clients that cannot ask their user (no MCP
// elicitation). Safe for concurrent use.
type Approvals interface {
	// Pending lists the calls waiting for an answer, oldest first.
	Pending() []Approval
	// Answer approves or denies the pending call id. by says who answered,
	// for the audit record. An id that is not pending (unknown, answered
	// or expired) is an error of class errdefs.ErrNotFound.
	Answer(id string, approve bool, by string) error
}

// Approval is one tool call waiting for a person's answer.
type Approval struct {
	ID      string `json:"id"`
	Session string `json:"session"`
	Client  string `json:"client,omitempty"` // the MCP client's name and version
	Agent   string `json:"agent,omitempty"`
	Tool    string `json:"tool"`
	// Summary is exactly what will run, as the person must see it before
	// answering: the code or command in full, the path and the content
	// (or its first part, saying how much more there is), the
	// environment, the limits and the hosts it may reach. It never holds
	// a secret. The page shows it verbatim, with invisible and
	// bidirectional-control characters made visible.
	Summary string    `json:"summary"`
	Created time.Time `json:"created"`
	Expires time.Time `json:"expires"`
}

// MetricsSource renders the metrics in the Prometheus text exposition
// format.
type MetricsSource interface {
	Metrics() ([]byte, error)
}

// AuditSource returns the last n records of the audit log, one JSON object
// per line, oldest first.
type AuditSource interface {
	AuditTail(n int) ([]byte, error)
}

// ImageBuilder builds images into vial's store (`vial rootfs build`).
type ImageBuilder interface {
	// Recipes lists the recipes Build accepts.
	Recipes() []string
	// Images lists the stored images.
	Images(ctx context.Context) ([]Image, error)
	// Build builds an image, writing progress lines to progress, and
	// stops when ctx is cancelled.
	Build(ctx context.Context, req BuildRequest, progress io.Writer) (*Image, error)
}

// BuildRequest says what to build: a recipe, or the image an environment
// template or an agent names in [sandbox.docker], with its packages.
type BuildRequest struct {
	Recipe      string   `json:"recipe,omitempty"`
	Name        string   `json:"name,omitempty"`
	Environment string   `json:"environment,omitempty"`
	Agent       string   `json:"agent,omitempty"`
	Packages    []string `json:"packages,omitempty"`
}

// Image is one stored image.
type Image struct {
	Name    string    `json:"name"`
	Digest  string    `json:"digest"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
	Source  string    `json:"source,omitempty"`
}
