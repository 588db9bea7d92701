package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vial-run/vial/api"
	"github.com/vial-run/vial/mcp"
	"github.com/vial-run/vial/policy"
	"github.com/vial-run/vial/service"
	"github.com/vial-run/vial/service/servicetest"
)

// The operator's page and API as vial serve --http mounts them: the MCP
// server's listener with the operator routes beside /mcp, over a service
// on the fake provider, the seed's configuration tree (copied, so that
// writes stay in the test) and fake approvals, metrics, audit and images.

const (
	testAdminToken = "operator-token-0123456789abcdef"
	testMCPToken   = "mcp-client-token-0123456789abcd"
	testSecret     = "sk-seed-secret-do-not-show"
)

type operatorHarness struct {
	URL       string // http://127.0.0.1:PORT
	ConfigDir string
	Svc       *service.Service

	Images *fakeImages
}

// copySeed copies config/testdata/seed into a new directory.
func copySeed(t *testing.T) string {
	t.Helper()
	src := filepath.Join("..", "..", "config", "testdata", "seed")
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

func newOperatorHarness(t *testing.T, writes bool) *operatorHarness {
	t.Helper()
	t.Setenv("SEARCH_API_KEY", testSecret)
	h := &operatorHarness{ConfigDir: copySeed(t), Images: &fakeImages{}}
	// The service's real operator queue: write_file needs a person, and
	// the clients of these tests cannot ask one, so their calls wait for
	// the page or the API.
	rules := &policy.Rules{Tools: map[string]policy.ToolRules{}, RequireConfirmation: policy.List("hitl.require_confirmation", "write_file")}
	for _, n := range mcp.ToolNames() {
		rules.Tools[n] = policy.ToolRules{Enabled: true}
	}
	svc, err := service.New(service.Options{Provider: servicetest.New(t), Policy: rules, OperatorApprovals: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { svc.Close(context.Background()) })
	h.Svc = svc
	g := &globals{StateDir: t.TempDir(), Stdout: io.Discard, Stderr: io.Discard, Log: slog.New(slog.DiscardHandler)}
	routes, closeAPI, err := operatorRoutes(g, svc, operatorOptions{
		Token: testAdminToken, ConfigDir: h.ConfigDir, AllowWrites: writes,
		Approvals: serviceApprovals{svc}, Metrics: fakeMetrics{}, Audit: fakeAudit{}, Images: h.Images,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(closeAPI)
	srv, err := mcp.NewServer(mcp.Options{Service: svc, HTTPRoutes: routes})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServeListener(ctx, ln, testMCPToken) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeListener: %v", err)
		}
	})
	h.URL = "http://" + ln.Addr().String()
	return h
}

// pendingWrite starts sess.WriteFile in the background — it waits for the
// operator's answer — and returns the queue's id for it and a channel
// with the call's outcome.
func pendingWrite(t *testing.T, svc *service.Service, sess *service.Session, path, content string) (string, chan error) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := sess.WriteFile(context.Background(), service.WriteRequest{Path: path, Data: []byte(content)})
		done <- err
	}()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, p := range svc.PendingApprovals() {
			if p.Session == sess.ID() && p.Tool == "write_file" {
				return p.ID, done
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the write did not wait for approval")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

type fakeMetrics struct{}

func (fakeMetrics) Metrics() ([]byte, error) {
	return []byte(`# HELP vial_calls_total Tool calls served, by outcome.
# TYPE vial_calls_total counter
vial_calls_total{tool="run_code",outcome="ok"} 42
vial_calls_total{tool="run_code",outcome="timed_out"} 1
# HELP vial_contexts Live contexts.
# TYPE vial_contexts gauge
vial_contexts 2
`), nil
}

type fakeAudit struct{}

func (fakeAudit) AuditTail(n int) ([]byte, error) {
	var b strings.Builder
	for i := range min(n, 3) {
		fmt.Fprintf(&b, `{"time":"2026-01-17T10:00:0%dZ","kind":"call","tool":"run_code","outcome":"ok","session":"s-1"}`+"\n", i)
	}
	return []byte(b.String()), nil
}

// fakeImages "builds" by writing progress lines.
type fakeImages struct {
	mu     sync.Mutex
	images []api.Image
}

func (f *fakeImages) Recipes() []string { return []string{"minimal", "python"} }

func (f *fakeImages) Images(context.Context) ([]api.Image, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]api.Image(nil), f.images...), nil
}

func (f *fakeImages) Build(ctx context.Context, req api.BuildRequest, progress io.Writer) (*api.Image, error) {
	for i := 1; i <= 5; i++ {
		fmt.Fprintf(progress, "==> step %d of 5: %s\n", i, req.Recipe)
		select {
		case <-time.After(20 * time.Millisecond):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if req.Recipe == "" {
		return nil, errors.New("no recipe")
	}
	img := api.Image{Name: req.Recipe, Digest: "sha256:0123456789abcdef0123456789abcdef", Size: 101 << 20, Created: time.Now(), Source: "mmdebstrap " + req.Recipe}
	f.mu.Lock()
	f.images = append(f.images, img)
	f.mu.Unlock()
	return &img, nil
}

// call sends one request with the operator token (unless the headers say
// otherwise) and returns the response with its body read.
func (h *operatorHarness) call(t *testing.T, method, path, ctype, body string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequest(method, h.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return res, string(b)
}
