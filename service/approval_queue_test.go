package service_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/policy"
	"github.com/vial-run/vial/service"
)

func confirmWrites() *policy.Rules {
	r := &policy.Rules{Tools: map[string]policy.ToolRules{}, RequireConfirmation: policy.List("hitl.require_confirmation", "write_file")}
	for _, n := range []string{"write_file", "read_file", "run_code", "list_directory"} {
		r.Tools[n] = policy.ToolRules{Enabled: true}
	}
	return r
}

// A call from a client that cannot ask a person waits for the operator's
// answer; approve runs it, deny and silence refuse it, and an answered or
// unknown id is not found.
func TestOperatorApprovalQueue(t *testing.T) {
	t.Parallel()
	svc, _ := newService(t, service.Options{Policy: confirmWrites(), OperatorApprovals: true, ApprovalTimeout: 2 * time.Second})
	s := open(t, svc, "a")
	write := func(path string) chan error {
		done := make(chan error, 1)
		go func() {
			_, err := s.WriteFile(context.Background(), service.WriteRequest{Path: path, Data: []byte("content of " + path)})
			done <- err
		}()
		return done
	}
	pending := func() service.PendingApproval {
		t.Helper()
		var p []service.PendingApproval
		waitFor(t, "a pending approval", func() bool { p = svc.PendingApprovals(); return len(p) == 1 })
		return p[0]
	}
	done := write("yes.txt")
	p := pending()
	if p.Tool != "write_file" || p.Session != "a" || !strings.Contains(p.Summary, "content of yes.txt") {
		t.Errorf("pending: %+v", p)
	}
	if err := svc.AnswerApproval(p.ID, true, "operator"); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("approved write: %v", err)
	}
	if err := svc.AnswerApproval(p.ID, true, "operator"); !errdefs.IsNotFound(err) {
		t.Errorf("answering twice: %v", err)
	}
	done = write("no.txt")
	svc.AnswerApproval(pending().ID, false, "operator")
	if err := <-done; !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), "declined") {
		t.Errorf("denied write: %v", err)
	}
	start := time.Now()
	done = write("silence.txt")
	pending()
	if err := <-done; !errdefs.IsPermissionDenied(err) || !strings.Contains(err.Error(), "nobody answered within 2s") || time.Since(start) > 4*time.Second {
		t.Errorf("unanswered write after %v: %v", time.Since(start), err)
	}
	if _, err := s.ReadFile(t.Context(), service.ReadRequest{Path: "no.txt"}); !errdefs.IsNotFound(err) {
		t.Errorf("the denied file exists: %v", err)
	}
	if fc, err := s.ReadFile(t.Context(), service.ReadRequest{Path: "yes.txt"}); err != nil || string(fc.Data) != "content of yes.txt" {
		t.Errorf("the approved file: %q %v", fc.Data, err)
	}
}
