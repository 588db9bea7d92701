package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The live server: contexts, approvals, metrics, audit, images.

func (a *API) contexts(w http.ResponseWriter, r *http.Request) error {
	if a.ctxs == nil {
		return unavailable("live contexts")
	}
	infos := a.ctxs.Contexts()
	out := make([]Context, 0, len(infos))
	for _, c := range infos {
		out = append(out, Context{ID: c.ID, Name: c.Name, Language: string(c.Language), Environment: c.Environment,
			Session: c.Session, Default: c.Default, Dead: c.Dead, Busy: c.Busy, Created: c.Created, LastUsed: c.LastUsed})
	}
	slices.SortStableFunc(out, func(x, y Context) int { return x.Created.Compare(y.Created) })
	writeJSON(w, http.StatusOK, map[string]any{"contexts": out})
	return nil
}

// stopContext stops any session's context: the operator's action.
func (a *API) stopContext(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	if err := checkName("context", id); err != nil {
		return err
	}
	if a.ctxs == nil {
		return unavailable("live contexts")
	}
	if err := a.ctxs.StopContext(id); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"stopped": id})
	return nil
}

func (a *API) approvals(w http.ResponseWriter, r *http.Request) error {
	if a.appr == nil {
		return unavailable("approvals")
	}
	writeJSON(w, http.StatusOK, map[string]any{"approvals": nonNil(a.appr.Pending()), "now": time.Now()})
	return nil
}

func (a *API) approve(w http.ResponseWriter, r *http.Request) error { return a.answer(w, r, true) }
func (a *API) deny(w http.ResponseWriter, r *http.Request) error    { return a.answer(w, r, false) }

func (a *API) answer(w http.ResponseWriter, r *http.Request, approve bool) error {
	id := r.PathValue("id")
	if err := checkName("approval", id); err != nil {
		return err
	}
	if a.appr == nil {
		return unavailable("approvals")
	}
	if err := a.appr.Answer(id, approve, answeredBy(r)); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "approved": approve})
	return nil
}

func (a *API) metricsText(w http.ResponseWriter, r *http.Request) error {
	if a.metrics == nil {
		return unavailable("metrics")
	}
	b, err := a.metrics.Metrics()
	if err != nil {
		return err
	}
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	w.Write(b)
	return nil
}

// Audit tail bounds: the page shows the latest records, not the file.
const (
	DefaultAuditLines = 100
	MaxAuditLines     = 1000
)

// auditTail is GET /audit?n=N: the last N records (1 to MaxAuditLines),
// each a JSON object (or, for a line that is not JSON, the line as a
// string).
func (a *API) auditTail(w http.ResponseWriter, r *http.Request) error {
	n := DefaultAuditLines
	if s := r.URL.Query().Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 1 || v > MaxAuditLines {
			return invalidf("n=%q: want a number from 1 to %d", cut(s), MaxAuditLines)
		}
		n = v
	}
	if a.audit == nil {
		return unavailable("the audit log")
	}
	b, err := a.audit.AuditTail(n)
	if err != nil {
		return err
	}
	entries := []any{}
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		line = bytes.TrimSpace(line)
		if len(line) == 0 {
			continue
		}
		if json.Valid(line) {
			entries = append(entries, json.RawMessage(line))
		} else {
			entries = append(entries, strings.ToValidUTF8(string(line), "\uFFFD"))
		}
	}
	if len(entries) > n {
		entries = entries[len(entries)-n:]
	}
	writeJSON(w, http.StatusOK, map[string]any{"entries": entries})
	return nil
}

func (a *API) listImages(w http.ResponseWriter, r *http.Request) error {
	if a.images == nil {
		return unavailable("images")
	}
	imgs, err := a.images.Images(r.Context())
	if err != nil {
		return err
	}
	var last any
	if b := a.builds.lastBuild(); b != nil {
		last = b.status()
	}
	writeJSON(w, http.StatusOK, map[string]any{"images": nonNil(imgs), "recipes": nonNil(a.images.Recipes()), "last_build": last})
	return nil
}

// startBuild is POST /images/builds: it starts a build and answers 202
// with its status; GET .../events streams its progress.
func (a *API) startBuild(w http.ResponseWriter, r *http.Request) error {
	if a.images == nil {
		return unavailable("image builds")
	}
	body, err := a.readBody(w, r)
	if err != nil {
		return err
	}
	var req BuildRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return invalidf("the build request is not valid JSON: %v", err)
	}
	if err := a.checkBuildRequest(req); err != nil {
		return err
	}
	b, err := a.builds.start(req)
	if err != nil {
		return err
	}
	w.Header().Set("Location", "/api/v1/images/builds/"+b.ID)
	writeJSON(w, http.StatusAccepted, b.status())
	return nil
}

func (a *API) build(r *http.Request) (*build, error) {
	id := r.PathValue("id")
	if err := checkName("build", id); err != nil {
		return nil, err
	}
	if a.images == nil {
		return nil, unavailable("image builds")
	}
	return a.builds.get(id)
}

func (a *API) buildStatus(w http.ResponseWriter, r *http.Request) error {
	b, err := a.build(r)
	if err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, b.status())
	return nil
}

func (a *API) buildEvents(w http.ResponseWriter, r *http.Request) error {
	b, err := a.build(r)
	if err != nil {
		return err
	}
	streamBuild(w, r, b)
	return nil
}

func (a *API) cancelBuild(w http.ResponseWriter, r *http.Request) error {
	b, err := a.build(r)
	if err != nil {
		return err
	}
	b.cancel()
	select {
	case <-b.finished:
	case <-time.After(10 * time.Second):
		// The builder is slow to stop; the status says it still runs.
	case <-r.Context().Done():
	}
	writeJSON(w, http.StatusOK, b.status())
	return nil
}
