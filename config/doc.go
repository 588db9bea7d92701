// Package config is vial's layered execution configuration, as seed 001
// describes it: TOML files under a configuration directory, merged level by
// level into one Resolved value that the rest of vial reads.
//
// The levels, lowest first:
//
//	0  built-in defaults and the built-in tool catalogue (compiled in)
//	1  config/execution.toml, config/tools.toml, config/mcp.toml (system)
//	2  config/environments/NAME.toml (templates, chained with extends)
//	3  agents/ID/agent.toml and agents/ID/.env (one agent)
//	4  runtime overrides: --set key=value flags, the API, tool arguments
//
// Every file is checked against a schema before it is merged: an unknown
// key is an error, never ignored, because a typo must not silently switch a
// protection off. Every error carries file:line:column and, where there is
// a closed set, what would have been valid; all of them are reported at
// once. The merge rules live in one place, docs/configuration.md, and in
// merge.go.
//
// The package imports only the standard library and go-toml, so that every
// other package can be tested without TOML: cmd/vial maps a Resolved onto
// the small option structs of runtime and mcp.
package config
