// Package policy is vial's one decision point: for a tool call, allow it,
// deny it naming the rule that denied it, or ask a human. It is pure — it
// reads a Rules value and a Call, does no I/O and keeps no state — and
// imports nothing of vial's, so every front end (MCP now, REST later)
// gets the same answer from the same data. cmd/vial maps the resolved
// configuration onto Rules; the application core (service) calls
// Rules.Decide for every call and enforces the answer: it runs the call,
// refuses it, or asks a human through MCP elicitation and, on approval,
// redeems a single-use token from Approvals that binds the human's answer
// to the exact call (Digest).
//
// # Decision order
//
// Rules.Decide checks, in order, and the first check that decides wins:
//
//  1. The tool: a tool no Rules.Tools entry defines, or one not enabled, is
//     denied (deny by default).
//  2. Blocked lists and limits, each denial naming the configuration key
//     and the entry: blocked_paths (for every file tool), paths outside
//     /workspace (workspace_only), max_file_size, blocked_commands (on
//     shell commands and shell code), blocked_imports (on Python code),
//     blocked_hosts and malformed hosts.
//  3. Dangerous patterns (seed 000's check on code): in mode deny a denial,
//     in mode warn a notice on the decision, off by default.
//  4. An HTTP method in the tool's auto_approve_methods: allowed without
//     asking (seed 001: GET and HEAD of http_request).
//  5. Confirmation: a tool named in require_confirmation asks, even when an
//     auto_approve_patterns entry matches it; else a matching pattern
//     allows; else the definition's requires_confirmation decides.
//
// The blocked lists come before approval so that a human is never asked to
// approve what would be refused, and so that no approval can lift what the
// operator blocked. What to do when a call needs a human and none can be
// asked (a client without the elicitation capability) is the enforcer's
// call, made with Rules.Unattended: by default such calls are denied —
// silence is never consent.
//
// # Guards and the boundary
//
// The boundary is the sandbox: namespaces, an empty network, no
// capabilities, seccomp, a read-only root, cgroup limits; for the file
// tools, a workspace root opened with os.Root. Nothing a model writes gets
// past it by spelling.
//
// Some checks here read text that something else will interpret — a shell
// command (MatchCommand), Python source (BlockedImport), any code
// (DangerousPatterns). Those are guards in front of the sandbox: they stop
// the obvious spelling of an action the operator does not want, and a
// determined program can always compute what they look for (variables,
// decoding, eval). Decision.Guard is true when one of them decided, and
// Decision.ModelText says so, so that neither the model nor the operator
// mistakes a guard for the boundary. Each matcher's documentation lists
// what it catches and what it cannot.
//
// Path, size and host checks are not guards in that sense: they judge the
// exact value the enforcer will use. They have their own limits, stated
// where they are defined: blocked_paths judge names (a symbolic link or a
// hard link made inside the sandbox is another name; the enforcer must
// check the path it finally opens), and bind only the file tools, not code
// running in the sandbox, which sees its whole workspace; a host name is
// judged as written, and the enforcer must judge each address it resolves
// to as well.
//
// # Failing closed
//
// The zero Decision, the zero Rules and a nil *Rules deny. A malformed
// blocked path or host entry blocks everything, and an unknown dangerous
// mode denies, so that a typo cannot switch a protection off;
// Rules.Validate reports every such entry, and cmd/vial should refuse to
// serve with them.
package policy
