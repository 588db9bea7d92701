package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	cdplog "github.com/chromedp/cdproto/log"
	cdpruntime "github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/vial-run/vial/internal/testutil"
	"github.com/vial-run/vial/service"
)

// TestOperatorPageInBrowser drives the operator page in headless Chromium
// (Debian's chromium package) against the listener vial serve --http
// runs, over the seed's configuration tree: sign in with the token, see
// the templates, change an agent's timeout_seconds, see a typo rejected
// at its line, save a valid change and see it resolved, preview the
// seed's runtime overrides, approve a pending write_file and find the
// file written, and stop a live context. The pending write is a real
// service call waiting in the service's operator queue; approving it on
// the page lets the call write the file. With VIAL_SCREENSHOTS=DIR it
// saves screenshots there (docs/screenshots holds the committed ones).
//
// It skips without chromium, and fails under CI=true.
func TestOperatorPageInBrowser(t *testing.T) {
	chrome := findChromium(t)
	h := newOperatorHarness(t, true)

	// A client session with a live context and a write waiting for a
	// person. The content hides a right-to-left override, which the page
	// must show.
	sess, err := h.Svc.OpenSession(service.SessionInfo{ID: "s-5f3a9c", Transport: "http", Client: "claude-code/2.1.3"})
	if err != nil {
		t.Fatal(err)
	}
	live, err := sess.CreateContext(context.Background(), service.CreateRequest{Language: service.Python, Name: "analysis"})
	if err != nil {
		t.Fatal(err)
	}
	content := "# Findings\n\nmean = 3.875\u202e (checked)\n"
	approval, written := pendingWrite(t, h.Svc, sess, "report.md", content)

	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chrome),
		chromedp.NoSandbox, // root in a VM: Chromium's sandbox needs a user namespace setup it does not have here
		chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1360, 960),
	)
	actx, cancelA := chromedp.NewExecAllocator(context.Background(), opts...)
	defer cancelA()
	ctx, cancelB := chromedp.NewContext(actx)
	defer cancelB()
	ctx, cancelT := context.WithTimeout(ctx, 2*time.Minute)
	defer cancelT()

	// Every script error, console error and CSP violation fails the test.
	var mu sync.Mutex
	var problems []string
	if err := chromedp.Listen(ctx, func(ev any) {
		mu.Lock()
		defer mu.Unlock()
		switch ev := ev.(type) {
		case *cdpruntime.EventExceptionThrown:
			problems = append(problems, "exception: "+ev.ExceptionDetails.Text+" "+describe(ev.ExceptionDetails.Exception))
		case *cdpruntime.EventConsoleAPICalled:
			if ev.Type == cdpruntime.ConsoleAPICalledTypeError {
				var args []string
				for _, a := range ev.Args {
					args = append(args, describe(a))
				}
				problems = append(problems, "console.error: "+strings.Join(args, " "))
			}
		case *cdplog.EventEntryAdded:
			if ev.Entry.Level == cdplog.EntryLevelError && !strings.Contains(ev.Entry.Text, "status of 422") && !strings.Contains(ev.Entry.Text, "status of 404") {
				problems = append(problems, fmt.Sprintf("log %s: %s %s", ev.Entry.Source, ev.Entry.Text, ev.Entry.URL))
			}
		}
	}); err != nil {
		testutil.Require(t, false, "chromium did not start: "+err.Error())
	}
	shots := os.Getenv("VIAL_SCREENSHOTS")
	shot := func(name string) {
		t.Helper()
		if shots == "" {
			return
		}
		b, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return s
	}
	eval := func(js string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Evaluate[string](js))
		if err != nil {
			t.Fatalf("%s: %v", js, err)
		}
		return s
	}
	// replace selects the first occurrence of old in the editor and types
	// new over it, as a person would.
	replace := func(old, new string) {
		t.Helper()
		eval(fmt.Sprintf(`(() => { const ta = document.querySelector('#editor'); const i = ta.value.indexOf(%q);
			if (i < 0) throw new Error('not in the editor: ' + %q); ta.focus(); ta.setSelectionRange(i, i + %d); return ''; })()`, old, old, len(old)))
		do("typing", chromedp.KeyEvent(new))
	}

	// Sign in. The token goes into sessionStorage, never into the URL.
	do("opening the page", chromedp.Navigate(h.URL+"/"), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	shot("operator-sign-in")
	do("signing in", chromedp.SendKeys(chromedp.CSS("#token"), testAdminToken), chromedp.Click(chromedp.CSS("#login-form button[type=submit]")),
		chromedp.WaitVisible(chromedp.CSS(`#templates li[data-name="python-dev"]`)))
	if got := text("#templates"); !strings.Contains(got, "python-dev") || !strings.Contains(got, "local-dev") || !strings.Contains(got, "data-science") {
		t.Errorf("templates: %q", got)
	}
	if u := eval(`location.href`); strings.Contains(u, testAdminToken) {
		t.Errorf("the token is in the URL: %s", u)
	}
	if s := eval(`sessionStorage.getItem('vial.operator-token')`); s != testAdminToken {
		t.Errorf("sessionStorage has %q", s)
	}

	// Open the agent: its file in the editor, its merged configuration.
	do("opening research-assistant", chromedp.Click(chromedp.CSS(`#agents li[data-id="research-assistant"] button`)),
		chromedp.WaitVisible(chromedp.CSS(`#resolved tr[data-key="sandbox.timeout_seconds"]`)))
	if got := text(`#resolved tr[data-key="sandbox.timeout_seconds"]`); !strings.Contains(got, "120") || !strings.Contains(got, "agent research-assistant") ||
		!strings.Contains(got, "agents/research-assistant/agent.toml:17") {
		t.Errorf("timeout_seconds row: %q", got)
	}
	if got := text(`#resolved tr[data-key="shell.env.SEARCH_API_KEY"]`); !strings.Contains(got, "********") {
		t.Errorf("secret row: %q", got)
	}
	if strings.Contains(eval(`document.documentElement.outerHTML`), testSecret) {
		t.Fatal("the secret reached the page")
	}

	// A typo is rejected at its line and nothing is saved.
	path := filepath.Join(h.ConfigDir, "agents", "research-assistant", "agent.toml")
	before, _ := os.ReadFile(path)
	replace("timeout_seconds = 120", "timout_seconds = 150")
	do("saving the typo", chromedp.Click(chromedp.CSS("#save")), chromedp.WaitVisible(chromedp.CSS(`#gutter .ln.bad[data-line="17"]`)))
	if got := text("#problems"); !strings.Contains(got, "line 17, column 1") || !strings.Contains(got, `unknown key "timout_seconds" in [sandbox], did you mean "timeout_seconds"?`) {
		t.Errorf("problems: %q", got)
	}
	if got := text("#editor-msg"); !strings.Contains(got, "Not saved") {
		t.Errorf("message: %q", got)
	}
	if after, _ := os.ReadFile(path); string(after) != string(before) {
		t.Fatal("the typo was written")
	}
	eval(`document.querySelector('#agent-view').scrollIntoView(), window.scrollBy(0, -60), ''`)
	shot("operator-typo-at-its-line")

	// The valid change is saved and shows in the merged configuration.
	replace("timout_seconds = 150", "timeout_seconds = 150")
	do("saving", chromedp.Click(chromedp.CSS("#save")), chromedp.WaitVisible(chromedp.CSS("#editor-msg.good")))
	if got := text("#editor-msg"); !strings.Contains(got, "Saved agents/research-assistant/agent.toml") {
		t.Errorf("message: %q", got)
	}
	waitText(t, ctx, `#resolved tr[data-key="sandbox.timeout_seconds"] td:nth-child(2)`, "150")
	if after, _ := os.ReadFile(path); !strings.Contains(string(after), "timeout_seconds = 150") {
		t.Errorf("the file has:\n%s", after)
	}
	if bak, _ := os.ReadFile(path + ".bak"); string(bak) != string(before) {
		t.Error("no backup of the previous file")
	}

	// The seed's runtime overrides, previewed.
	do("previewing", chromedp.Click(chromedp.CSS("#preview")), chromedp.WaitVisible(chromedp.CSS(`#changes tr[data-key="sandbox.timeout_seconds"]`)))
	if got := text("#changes"); !strings.Contains(got, "sandbox.timeout_seconds\t150\t180") && !strings.Contains(got, "150") {
		t.Errorf("changes: %q", got)
	}
	if got := text(`#changes tr[data-key="shell.env.DEBUG"]`); !strings.Contains(got, `"true"`) {
		t.Errorf("DEBUG change: %q", got)
	}
	eval(`document.querySelector('#resolved').closest('.card').scrollIntoView(), window.scrollBy(0, -60), ''`)
	shot("operator-configuration")

	// Live: approve the pending write; the file is written.
	do("opening Live", chromedp.Click(chromedp.CSS(`#tabs .tab[data-tab="live"]`)),
		chromedp.WaitVisible(chromedp.CSS(`.approval[data-id="`+approval+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#contexts tr[data-id="`+live.ID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#metrics tr[data-name="vial_calls_total"]`)))
	summary := text(`.approval[data-id="` + approval + `"] .summary`)
	if !strings.Contains(summary, "/workspace/report.md") || !strings.Contains(summary, "mean = 3.875⟨U+202E⟩ (checked)") || strings.Contains(summary, "\u202e") {
		t.Errorf("summary as shown: %q", summary)
	}
	shot("operator-live")
	do("approving", chromedp.Click(chromedp.CSS(`.approval[data-id="`+approval+`"] .approve`)),
		chromedp.WaitVisible(chromedp.CSS(`.approval.approved[data-id="`+approval+`"]`)))
	if err := <-written; err != nil {
		t.Errorf("the approved write failed: %v", err)
	}
	fc, err := sess.ReadFile(context.Background(), service.ReadRequest{Path: "report.md"})
	if err != nil || string(fc.Data) != content {
		t.Errorf("the approved file: %q, %v", fc.Data, err)
	}

	// Stop the live context.
	do("stopping the context", chromedp.Click(chromedp.CSS(`#contexts tr[data-id="`+live.ID+`"] .stop`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#contexts tr[data-id="`+live.ID+`"]`)))
	if left := h.Svc.Contexts(); len(left) != 0 {
		t.Errorf("contexts left: %+v", left)
	}

	// An image build streams its progress.
	do("building", chromedp.Click(chromedp.CSS(`#tabs .tab[data-tab="images"]`)),
		chromedp.WaitReady(chromedp.CSS(`#build-recipe option[value="python"]`)),
		chromedp.SetValue(chromedp.CSS("#build-recipe"), "python"),
		chromedp.Click(chromedp.CSS("#build-start")),
		chromedp.WaitVisible(chromedp.CSS("#build-msg.good")))
	if got := text("#build-log"); strings.Count(got, "==> step") != 5 {
		t.Errorf("build log: %q", got)
	}
	shot("operator-images")

	// Signing out forgets the token.
	do("signing out", chromedp.Click(chromedp.CSS("#logout")), chromedp.WaitVisible(chromedp.CSS("#login-form")))
	if s := eval(`String(sessionStorage.getItem('vial.operator-token'))`); s != "null" {
		t.Errorf("after sign-out, sessionStorage has %q", s)
	}
	mu.Lock()
	defer mu.Unlock()
	for _, p := range problems {
		t.Errorf("in the page: %s", p)
	}
}

// findChromium finds Debian's chromium (or $VIAL_CHROMIUM), skipping
// loudly without it — and failing under CI=true, where .ci/run installs
// it.
func findChromium(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("VIAL_CHROMIUM"); p != "" {
		return p
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	testutil.Require(t, false, "the browser test needs Chromium: apt-get install chromium (scripts/install-deps.sh installs it)")
	return ""
}

// waitText waits until the element's text contains want.
func waitText(t *testing.T, ctx context.Context, sel, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err == nil && strings.Contains(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %q, want %q (%v)", sel, got, want, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func describe(o *cdpruntime.RemoteObject) string {
	if o == nil {
		return ""
	}
	if o.Description != "" {
		return o.Description
	}
	return string(o.Value)
}
