package main

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/vial-run/vial/api"
	"github.com/vial-run/vial/rootfs"
	"github.com/vial-run/vial/service"
	"github.com/vial-run/vial/web"
)

// operatorToken decides the operator's token for the page and the API on
// the HTTP listener at addr: --admin-token-file, else $VIAL_ADMIN_TOKEN,
// else generated and written to <state-dir>/admin-token. It must differ
// from the MCP clients' token (mcpToken, "" with --http-no-auth): a
// client holding the MCP token must not be able to answer its own
// approvals or see and stop other sessions' contexts.
func operatorToken(g *globals, addr, file, mcpToken string) (string, error) {
	tok, err := secretToken(g, tokenSource{File: file, Env: "VIAL_ADMIN_TOKEN", StateFile: "admin-token", What: "the operator token",
		Announce: func(tok, path string) string {
			return fmt.Sprintf("the operator page is at http://%s/ — sign in with %s (also in %s)", addr, tok, path)
		}})
	if err != nil {
		return "", err
	}
	if mcpToken != "" && subtle.ConstantTimeCompare([]byte(tok), []byte(mcpToken)) == 1 {
		return "", errors.New("the operator token (--admin-token-file, $VIAL_ADMIN_TOKEN) must differ from the MCP clients' token (--http-token-file, $VIAL_HTTP_TOKEN)")
	}
	return tok, nil
}

// operatorOptions configure the operator's page and API.
type operatorOptions struct {
	Token       string
	ConfigDir   string
	AllowWrites bool
	// Approvals, Metrics and Audit are wired when the service offers
	// them; nil answers 501.
	Approvals api.Approvals
	Metrics   api.MetricsSource
	Audit     api.AuditSource
	// Images builds images; nil builds into the state directory's store.
	Images api.ImageBuilder
}

// operatorRoutes builds the handlers the HTTP listener serves beside /mcp:
// the API at /api/ and the page at /. closeFn stops a running image build.
func operatorRoutes(g *globals, svc *service.Service, o operatorOptions) (routes map[string]http.Handler, closeFn func(), err error) {
	images := o.Images
	if images == nil {
		images = storeBuilder{stateDir: g.StateDir, configDir: o.ConfigDir}
	}
	opts := api.Options{
		Token:       o.Token,
		Config:      &configAPI{dir: o.ConfigDir},
		AllowWrites: o.AllowWrites,
		Approvals:   o.Approvals,
		Metrics:     o.Metrics,
		Audit:       o.Audit,
		Images:      images,
		Version:     version,
		Log:         g.Log,
	}
	if svc != nil {
		opts.Contexts = svc
	}
	a, err := api.New(opts)
	if err != nil {
		return nil, nil, err
	}
	return map[string]http.Handler{"/api/": a, "/": web.Handler()}, a.Close, nil
}

// storeBuilder builds images into the state directory's store, as `vial
// rootfs build` does (api.ImageBuilder).
type storeBuilder struct {
	stateDir, configDir string
}

func (b storeBuilder) Recipes() []string { return rootfs.Recipes() }

func (b storeBuilder) Images(ctx context.Context) ([]api.Image, error) {
	s, err := rootfs.OpenStore(b.stateDir)
	if err != nil {
		return nil, err
	}
	list, err := s.List()
	if err != nil {
		return nil, err
	}
	out := make([]api.Image, 0, len(list))
	for _, im := range list {
		out = append(out, api.Image{Name: im.Name, Digest: im.Digest, Size: im.Size, Created: im.Created, Source: im.Source})
	}
	return out, nil
}

func (b storeBuilder) Build(ctx context.Context, req api.BuildRequest, progress io.Writer) (*api.Image, error) {
	info, err := buildImage(ctx, b.stateDir, imageBuild{Recipe: req.Recipe, Name: req.Name, Environment: req.Environment,
		Agent: req.Agent, Packages: req.Packages, ConfigDir: b.configDir}, progress)
	if err != nil {
		return nil, err
	}
	return &api.Image{Name: info.Name, Digest: info.Digest, Size: info.Size, Created: info.Created, Source: info.Source}, nil
}

// serviceApprovals is the service's operator approval queue as the API
// takes it.
type serviceApprovals struct{ svc *service.Service }

func (a serviceApprovals) Pending() []api.Approval {
	list := a.svc.PendingApprovals()
	out := make([]api.Approval, 0, len(list))
	for _, p := range list {
		out = append(out, api.Approval{ID: p.ID, Session: p.Session, Client: p.Client, Agent: p.Agent, Tool: p.Tool,
			Summary: p.Summary, Created: p.Created, Expires: p.Expires})
	}
	return out
}

func (a serviceApprovals) Answer(id string, approve bool, by string) error {
	return a.svc.AnswerApproval(id, approve, by)
}
