package service

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/internal/human"
	"github.com/vial-run/vial/observe"
	"github.com/vial-run/vial/policy"
)

// The service is the policy enforcement point: every operation builds a
// policy.Call from what will really run (the resolved language, the
// cleaned and resolved paths, the bytes moved) and obeys the decision of
// Options.Policy before anything starts — no sandbox, slot or file is
// touched by a call that is denied or waits for a human.
//
// Asking a human is the front end's business (MCP elicitation, the REST
// API's approval queue), but the proof of an answer is the service's: when
// a call needs approval, the service issues a single-use token bound to
// the session and to the digest of the exact call, and returns
// *ApprovalRequired. The front end asks, then calls again with the answer
// and the token in the context (WithAsking). The service accepts only a
// token it issued, for this session, for these very arguments, once, and
// before it expires: a model cannot approve itself, replay an approval or
// change the arguments under one.

// DefaultApprovalTimeout is how long an approval may take when Options
// sets none (seed 001's hitl.timeout_seconds default).
const DefaultApprovalTimeout = 5 * time.Minute

// Asking is what the front end knows about asking a human for this call.
type Asking struct {
	// CanAsk reports that the front end can put a question to a person
	// for this call (the MCP client declared elicitation). Silence is
	// never consent: without it a call that needs approval is denied,
	// unless the operator allows the tool unattended.
	CanAsk bool
	// Answer is the answer to an earlier ApprovalRequired, nil on a first
	// call.
	Answer *Answer
}

// Answer is a person's answer to an approval request.
type Answer struct {
	// Token is ApprovalRequired.Token of the request answered.
	Token string
	// Approved is true only for an explicit yes.
	Approved bool
	// Outcome says how the request ended: "accept", "decline", "cancel",
	// "timeout" or "error".
	Outcome string
	// By names who answered (the client and how), for the record.
	By string
	// Waited is how long the person took.
	Waited time.Duration
}

type askingKey struct{}

// WithAsking returns ctx carrying a for the service operation called with
// it. A context without it cannot ask and carries no answer.
func WithAsking(ctx context.Context, a Asking) context.Context {
	return context.WithValue(ctx, askingKey{}, a)
}

func askingFrom(ctx context.Context) Asking {
	a, _ := ctx.Value(askingKey{}).(Asking)
	return a
}

// ApprovalRequired is the answer to a call that needs a person's approval:
// ask, then call again with the answer (WithAsking). It is an error of
// class FailedPrecondition so that a front end that ignores it refuses the
// call.
type ApprovalRequired struct {
	Token   string
	Tool    string
	Rule    string // the configuration rule that asks
	Summary Summary
	Expires time.Time
}

func (e *ApprovalRequired) Error() string {
	return fmt.Sprintf("%s needs a person's approval (%s)", e.Tool, e.Rule)
}

// Unwrap gives the class.
func (e *ApprovalRequired) Unwrap() error { return errdefs.ErrFailedPrecondition }

// Summary is what a person approving a call must see: exactly what will
// run or change, where, and under which limits.
type Summary struct {
	Tool string
	// Action is one line: "run python code in context ctx-1 (environment
	// data)", "write 1.2 KiB to /workspace/notes.txt".
	Action string
	// Detail is the code, command or content (a prefix of at most 4 KiB,
	// marked when cut); "" when there is none.
	Detail string
	// Environment, Limits and Hosts say where it runs.
	Environment string
	Limits      string
	Hosts       []string
}

// Text renders the summary for a person.
func (s Summary) Text() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s wants to %s.", s.Tool, s.Action)
	if s.Environment != "" || s.Limits != "" {
		b.WriteString("\n")
		if s.Environment != "" {
			fmt.Fprintf(&b, "Environment: %s. ", s.Environment)
		}
		if s.Limits != "" {
			fmt.Fprintf(&b, "Limits: %s.", s.Limits)
		}
	}
	if len(s.Hosts) > 0 {
		fmt.Fprintf(&b, "\nNetwork: %s.", strings.Join(s.Hosts, ", "))
	} else if s.Limits != "" {
		b.WriteString("\nNetwork: none.")
	}
	if s.Detail != "" {
		fmt.Fprintf(&b, "\n\n%s", s.Detail)
	}
	return b.String()
}

// maxDetail bounds Summary.Detail.
const maxDetail = 4 << 10

func detail(s string) string {
	s = human.Valid(s)
	if len(s) <= maxDetail {
		return s
	}
	cut := maxDetail
	for cut > 0 && (s[cut]&0xC0) == 0x80 {
		cut--
	}
	return s[:cut] + fmt.Sprintf("\n[... %s more not shown]", human.Bytes(uint64(len(s)-cut)))
}

// limitsText describes an environment's limits for a summary.
func limitsText(env Environment, timeout time.Duration) string {
	l := env.Limits.WithDefaults()
	return fmt.Sprintf("%s memory, %g CPU, %d processes, time limit %s", human.Bytes(uint64(l.MemoryBytes)), l.CPUs, l.Pids, human.Duration(timeout))
}

// authorize decides call and enforces the decision: nil to go ahead (with
// any notices for the result), an *Error to refuse, or *ApprovalRequired.
func (s *Session) authorize(ctx context.Context, call policy.Call, sum Summary) (notices []string, err error) {
	rules := s.svc.opts.Policy
	if rules == nil {
		return nil, nil // no policy configured: every offered tool runs
	}
	call.Session, call.Client, call.Agent = s.id, s.clientName(), s.svc.opts.Agent
	d := rules.Decide(call)
	digest := policy.Digest(call.Tool, call.Args)
	ev := observe.Event{Kind: observe.KindDecision, Session: s.id, Client: call.Client, Agent: call.Agent, Tool: call.Tool,
		ArgsDigest: digest, Environment: call.Environment, Decision: d.Effect.String(), Rule: d.Rule}
	switch d.Effect {
	case policy.Allow:
		s.svc.publish(ev)
		return d.Notices, nil
	case policy.Ask:
	default:
		s.svc.publish(ev)
		return nil, &Error{msg: d.ModelText(), class: errdefs.ErrPermissionDenied}
	}
	asking := askingFrom(ctx)
	if asking.Answer == nil && !asking.CanAsk && s.svc.opts.OperatorApprovals {
		// Nobody can be asked through the client: the call waits for the
		// operator's answer on the page or the API (the out-of-band
		// channel the operator chose), holding nothing but this call.
		a, err := s.svc.queue.wait(ctx, s, call, d.Rule, sum, digest)
		if err != nil {
			return nil, err
		}
		asking.Answer = a
	}
	switch {
	case asking.Answer != nil:
		a := asking.Answer
		ev.AnsweredBy, ev.Waited = a.By, a.Waited
		if !a.Approved {
			// No (or no answer): denied, whatever the token; it is used
			// up so that it cannot serve later.
			_ = s.svc.approvals.Redeem(s.id, a.Token, digest)
			ev.Decision = outcomeDecision(a.Outcome)
			s.svc.publish(ev)
			return nil, errorf(errdefs.ErrPermissionDenied, "%s was not run: %s (%s requires a person's approval). Do not retry unless the user asks for it.", call.Tool, answerText(a.Outcome, s.svc.approvalTimeout), d.Rule)
		}
		if err := s.svc.approvals.Redeem(s.id, a.Token, digest); err != nil {
			// A forged, replayed, expired token, or arguments changed
			// under an approval: never a yes.
			ev.Decision = "refused"
			ev.Error = err.Error()
			s.svc.publish(ev)
			return nil, wrapf(errdefs.ErrPermissionDenied, err, "%s was not run: the approval it carried is not valid (%v). Approvals come only from a person answering vial's own request, once, for exactly these arguments.", call.Tool, err)
		}
		ev.Decision = "approved"
		s.svc.publish(ev)
		return d.Notices, nil
	case asking.CanAsk:
		ev.Decision = "ask"
		s.svc.publish(ev)
		return nil, &ApprovalRequired{
			Token:   s.svc.approvals.Issue(s.id, digest, s.svc.approvalTimeout),
			Tool:    call.Tool,
			Rule:    d.Rule,
			Summary: sum,
			Expires: time.Now().Add(s.svc.approvalTimeout),
		}
	case rules.Unattended(call.Tool):
		// The operator chose to let this tool run when nobody can be
		// asked (hitl.unattended).
		ev.Decision, ev.Rule = "allow", "hitl.unattended"
		s.svc.publish(ev)
		return d.Notices, nil
	default:
		ev.Decision = "deny"
		ev.Reason = "no human can be asked"
		s.svc.publish(ev)
		return nil, errorf(errdefs.ErrPermissionDenied, "%s was not run: it needs a person's approval (%s), and this client cannot ask one (it did not declare the MCP elicitation capability). Nothing ran. The operator can allow the tool without approval (hitl.auto_approve_patterns, or hitl.unattended for clients that cannot ask), or connect a client that supports elicitation.", call.Tool, d.Rule)
	}
}

func outcomeDecision(outcome string) string {
	switch outcome {
	case "decline", "cancel", "timeout":
		return map[string]string{"decline": "declined", "cancel": "cancelled", "timeout": "timeout"}[outcome]
	}
	return "denied"
}

func answerText(outcome string, timeout time.Duration) string {
	switch outcome {
	case "decline":
		return "the person declined it"
	case "cancel":
		return "the person cancelled the request"
	case "timeout":
		return fmt.Sprintf("nobody answered within %s", human.Duration(timeout))
	case "accept":
		return "the person did not approve it"
	}
	return "the approval request failed"
}

// PendingApproval is a call waiting for the operator's answer.
type PendingApproval struct {
	ID      string // the queue's own id (not the approval token)
	Session string
	Client  string
	Agent   string
	Tool    string
	Rule    string
	Summary string // exactly what will run (Summary.Text)
	Created time.Time
	Expires time.Time
}

// approvalQueue holds the calls that wait for the operator. Safe for
// concurrent use; bounded (a client cannot grow it without end).
type approvalQueue struct {
	mu      sync.Mutex
	pending map[string]*queued
}

type queued struct {
	PendingApproval
	token  string
	answer chan *Answer // buffered: one answer
}

// maxQueued bounds the calls waiting for the operator at once.
const maxQueued = 256

// wait queues call and waits for the operator's answer, at most the
// approval timeout. The answer carries the token issued for the call, so
// the service checks it like any other.
func (q *approvalQueue) wait(ctx context.Context, s *Session, call policy.Call, rule string, sum Summary, digest string) (*Answer, error) {
	timeout := s.svc.approvalTimeout
	var b [8]byte
	_, _ = rand.Read(b[:])
	e := &queued{
		PendingApproval: PendingApproval{ID: "apr-" + hex.EncodeToString(b[:]), Session: s.id, Client: call.Client, Agent: call.Agent,
			Tool: call.Tool, Rule: rule, Summary: sum.Text(), Created: time.Now(), Expires: time.Now().Add(timeout)},
		token:  s.svc.approvals.Issue(s.id, digest, timeout),
		answer: make(chan *Answer, 1),
	}
	q.mu.Lock()
	if q.pending == nil {
		q.pending = map[string]*queued{}
	}
	if len(q.pending) >= maxQueued {
		q.mu.Unlock()
		return nil, errorf(errdefs.ErrResourceExhausted, "%s was not run: %d calls already wait for the operator's approval", call.Tool, maxQueued)
	}
	q.pending[e.ID] = e
	q.mu.Unlock()
	defer func() {
		q.mu.Lock()
		delete(q.pending, e.ID)
		q.mu.Unlock()
	}()
	s.svc.log.Info("a call waits for the operator's approval", "approval", e.ID, "session", s.id, "tool", call.Tool, "rule", rule)
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case a := <-e.answer:
		a.Waited = time.Since(e.Created)
		return a, nil
	case <-t.C:
		return &Answer{Token: e.token, Outcome: "timeout", By: "operator (no answer)", Waited: timeout}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// PendingApprovals lists the calls waiting for the operator, oldest
// first.
func (s *Service) PendingApprovals() []PendingApproval {
	q := s.queue
	q.mu.Lock()
	out := make([]PendingApproval, 0, len(q.pending))
	for _, e := range q.pending {
		out = append(out, e.PendingApproval)
	}
	q.mu.Unlock()
	slices.SortFunc(out, func(a, b PendingApproval) int { return a.Created.Compare(b.Created) })
	return out
}

// AnswerApproval answers a waiting call: approve runs it exactly as shown,
// anything else denies it. by names the person, for the record. An id
// that is not waiting (unknown, answered, expired) is ErrNotFound.
func (s *Service) AnswerApproval(id string, approve bool, by string) error {
	q := s.queue
	q.mu.Lock()
	e, ok := q.pending[id]
	if ok {
		delete(q.pending, id)
	}
	q.mu.Unlock()
	if !ok {
		return errorf(errdefs.ErrNotFound, "no call waits for approval %s", human.Trunc(id, 64))
	}
	outcome := "decline"
	if approve {
		outcome = "accept"
	}
	e.answer <- &Answer{Token: e.token, Approved: approve, Outcome: outcome, By: by}
	return nil
}
