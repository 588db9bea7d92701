package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"reflect"
	"strings"

	"github.com/containerd/errdefs"
)

// The endpoints of seed 001, section 6.1, under /api/v1/execution.

func (a *API) needConfig() error {
	if a.cfg == nil {
		return unavailable("the configuration")
	}
	return nil
}

func (a *API) templates(w http.ResponseWriter, r *http.Request) error {
	if err := a.needConfig(); err != nil {
		return err
	}
	ts, err := a.cfg.Templates(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"templates": nonNil(ts)})
	return nil
}

func (a *API) template(w http.ResponseWriter, r *http.Request) error {
	name := r.PathValue("name")
	if err := checkName("template", name); err != nil {
		return err
	}
	if err := a.needConfig(); err != nil {
		return err
	}
	t, err := a.cfg.Template(r.Context(), name)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, t)
	return nil
}

func (a *API) agents(w http.ResponseWriter, r *http.Request) error {
	if err := a.needConfig(); err != nil {
		return err
	}
	as, err := a.cfg.Agents(r.Context())
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"agents": nonNil(as), "writes": a.opts.AllowWrites})
	return nil
}

// boolParam reads a boolean query parameter; absent is false.
func boolParam(r *http.Request, name string) (bool, error) {
	switch v := r.URL.Query().Get(name); strings.ToLower(v) {
	case "", "false", "0", "no":
		return false, nil
	case "true", "1", "yes":
		return true, nil
	default:
		return false, invalidf("%s=%q: want true or false", name, cut(v))
	}
}

// agentConfig is GET /agents/{id}/config: the agent's file, or with
// ?resolve=true the merged configuration with provenance.
func (a *API) agentConfig(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := checkName("agent", id); err != nil {
		return err
	}
	resolve, err := boolParam(r, "resolve")
	if err != nil {
		return err
	}
	if err := a.needConfig(); err != nil {
		return err
	}
	if resolve {
		res, err := a.cfg.Resolve(r.Context(), id, nil)
		if err != nil {
			return err
		}
		writeJSON(w, http.StatusOK, res)
		return nil
	}
	f, err := a.cfg.AgentFile(r.Context(), id)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", `"`+f.SHA256+`"`)
	writeJSON(w, http.StatusOK, f)
	return nil
}

// bodyKind says how a body is written: by its Content-Type, else by its
// first character (a TOML file cannot start with '{').
func bodyKind(r *http.Request, body []byte) (json bool, err error) {
	ct := r.Header.Get("Content-Type")
	if ct != "" {
		mt, _, err := mime.ParseMediaType(ct)
		if err != nil {
			return false, invalidf("Content-Type %q: %v", cut(ct), err)
		}
		switch {
		case mt == "application/json" || strings.HasSuffix(mt, "+json"):
			return true, nil
		case mt == "application/toml" || mt == "text/toml" || mt == "text/x-toml" || mt == "text/plain":
			return false, nil
		case mt != "application/octet-stream" && mt != "application/x-www-form-urlencoded":
			return false, invalidf("Content-Type %s: send TOML (application/toml) or JSON (application/json)", mt)
		}
	}
	return bytes.HasPrefix(bytes.TrimLeft(body, " \t\r\n\ufeff"), []byte("{")), nil
}

// putAgentConfig is PUT /agents/{id}/config: the body is the new
// agent.toml. It is validated with the rest of the configuration first;
// only a valid file is written (atomically, the previous one kept as
// agent.toml.bak). With If-Match, the file must not have changed since it
// was read.
func (a *API) putAgentConfig(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := checkName("agent", id); err != nil {
		return err
	}
	if err := a.needConfig(); err != nil {
		return err
	}
	if !a.opts.AllowWrites {
		return fmt.Errorf("writing agent files is not enabled on this server (the operator starts vial serve with --api-allow-writes): %w", errdefs.ErrPermissionDenied)
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	isJSON, err := bodyKind(r, body)
	if err != nil {
		return err
	}
	if isJSON {
		return invalidf("PUT takes the agent.toml file itself (Content-Type: application/toml); to check a JSON body, POST it to /api/v1/execution/validate")
	}
	ifMatch := strings.TrimPrefix(strings.TrimSpace(r.Header.Get("If-Match")), "W/")
	ifMatch = strings.Trim(ifMatch, `"`)
	if ifMatch == "*" {
		ifMatch = ""
	}
	f, err := a.cfg.WriteAgentFile(r.Context(), id, body, ifMatch)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", `"`+f.SHA256+`"`)
	writeJSON(w, http.StatusOK, f)
	return nil
}

// validationAnswer is POST /validate's answer: the Validation, and when it
// failed the error fields every error answer has.
type validationAnswer struct {
	*Validation
	Error string `json:"error,omitempty"`
	Class string `json:"class,omitempty"`
}

// jsonBodyFile names a JSON body in problems.
const jsonBodyFile = "request body"

// validate is POST /validate: the body, TOML or JSON, validated as an
// agent's file (?agent=ID, default a new agent) or a template's
// (?template=NAME), with every problem at its line and column — of the
// JSON, for a JSON body. 200 when valid, 422 when not.
func (a *API) validate(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	target := ValidateTarget{Agent: q.Get("agent"), Template: q.Get("template")}
	if target.Agent != "" && target.Template != "" {
		return invalidf("agent and template exclude each other")
	}
	if q.Has("agent") {
		if err := checkName("agent", target.Agent); err != nil {
			return err
		}
	}
	if q.Has("template") {
		if err := checkName("template", target.Template); err != nil {
			return err
		}
	}
	if err := a.needConfig(); err != nil {
		return err
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	isJSON, err := bodyKind(r, body)
	if err != nil {
		return err
	}
	var lines []jsonPos
	if isJSON {
		var je *jsonError
		body, lines, err = jsonToTOML(body)
		if err != nil {
			if errors.As(err, &je) {
				v := &Validation{File: jsonBodyFile, Problems: []Problem{{File: jsonBodyFile, Line: je.Line, Col: je.Col, Message: je.Msg}}, Warnings: []string{}}
				writeJSON(w, http.StatusUnprocessableEntity, validationAnswer{Validation: v, Error: (&ConfigError{Problems: v.Problems}).Error(), Class: "invalid configuration"})
				return nil
			}
			return err
		}
	}
	v, err := a.cfg.Validate(r.Context(), target, body)
	if err != nil {
		return err
	}
	if isJSON {
		// Problems in the body's file are at lines of the TOML it was
		// turned into: show them at the JSON key each line came from.
		file := v.File
		for i, p := range v.Problems {
			if p.File != file {
				continue
			}
			p.File = jsonBodyFile
			if p.Line >= 1 && p.Line <= len(lines) {
				jp := lines[p.Line-1]
				p.Line, p.Col, p.Path = jp.Line, jp.Col, jp.Path
			} else {
				p.Line, p.Col = 0, 0
			}
			v.Problems[i] = p
		}
		v.File = jsonBodyFile
	}
	if v.Problems == nil {
		v.Problems = []Problem{}
	}
	if v.Warnings == nil {
		v.Warnings = []string{}
	}
	if !v.Valid {
		writeJSON(w, http.StatusUnprocessableEntity, validationAnswer{Validation: v, Error: (&ConfigError{Problems: v.Problems}).Error(), Class: "invalid configuration"})
		return nil
	}
	writeJSON(w, http.StatusOK, validationAnswer{Validation: v})
	return nil
}

// preview is POST /agents/{id}/preview: the agent's configuration with the
// body's runtime overrides (a JSON object, the seed's runtime_overrides)
// merged over it, and what they changed. Nothing is started or written.
func (a *API) preview(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := checkName("agent", id); err != nil {
		return err
	}
	if err := a.needConfig(); err != nil {
		return err
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	if isJSON, err := bodyKind(r, body); err != nil {
		return err
	} else if !isJSON {
		return invalidf("the overrides are a JSON object, e.g. {\"sandbox\": {\"timeout_seconds\": 180}}")
	}
	overrides, err := decodeOverrides(body)
	if err != nil {
		return err
	}
	echo, _ := decodeOverrides(body) // the resolver may keep the map
	before, err := a.cfg.Resolve(r.Context(), id, nil)
	if err != nil {
		return err
	}
	after, err := a.cfg.Resolve(r.Context(), id, overrides)
	if err != nil {
		return err
	}
	old := map[string]Value{}
	for _, v := range before.Values {
		old[v.Key] = v
	}
	changes := []Change{}
	for _, v := range after.Values {
		o, had := old[v.Key]
		switch {
		case !had:
			changes = append(changes, Change{Key: v.Key, To: v.Value})
		case o.Text != v.Text || !reflect.DeepEqual(o.Value, v.Value):
			changes = append(changes, Change{Key: v.Key, From: o.Value, To: v.Value})
		}
	}
	writeJSON(w, http.StatusOK, Preview{Resolved: *after, Changes: changes, Overrides: echo})
	return nil
}

// agentParam reads the optional ?agent=ID.
func agentParam(r *http.Request) (string, error) {
	q := r.URL.Query()
	if !q.Has("agent") {
		return "", nil
	}
	id := q.Get("agent")
	return id, checkName("agent", id)
}

func (a *API) tools(w http.ResponseWriter, r *http.Request) error {
	return agentList(a, w, r, "tools", a.cfg.Tools)
}

func (a *API) mcpServers(w http.ResponseWriter, r *http.Request) error {
	return agentList(a, w, r, "servers", a.cfg.MCPServers)
}

// agentList answers a request naming ?agent=ID with that agent's list,
// under key.
func agentList[T any](a *API, w http.ResponseWriter, r *http.Request, key string, get func(context.Context, string) ([]T, error)) error {
	agent, err := agentParam(r)
	if err != nil {
		return err
	}
	if err := a.needConfig(); err != nil {
		return err
	}
	list, err := get(r.Context(), agent)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"agent": agent, key: nonNil(list)})
	return nil
}

// nonNil makes a nil slice an empty JSON array.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}
