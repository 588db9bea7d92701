package policy

import (
	"container/list"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"sync"
	"time"

	"github.com/containerd/errdefs"
)

// Errors of Approvals.Redeem. Each is its own value for errors.Is, and
// each carries the class errdefs.ErrPermissionDenied: every one means "no
// human approved this exact call", which the enforcer must treat as a
// denial.
var (
	// ErrTokenUnknown: vial never issued the token (a forged or
	// guessed answer), or forgot it (evicted, or its session ended).
	ErrTokenUnknown = approvalError("the approval token was not issued by vial")
	// ErrTokenReplayed: the token was redeemed before.
	ErrTokenReplayed = approvalError("the approval token was used before")
	// ErrTokenSession: the token was issued to another session.
	ErrTokenSession = approvalError("the approval token belongs to another session")
	// ErrTokenExpired: the token's time to live ran out.
	ErrTokenExpired = approvalError("the approval token has expired")
	// ErrTokenArgs: the call is not the one approved (its tool or
	// arguments changed). The token is spent.
	ErrTokenArgs = approvalError("the approval was for different arguments")
)

type approvalError string

func (e approvalError) Error() string { return string(e) }
func (e approvalError) Unwrap() error { return errdefs.ErrPermissionDenied }

// Defaults of ApprovalOptions.
const (
	DefaultMaxApprovals           = 1024
	DefaultMaxApprovalsPerSession = 64
)

// ApprovalOptions configure NewApprovals. Zero fields take the defaults.
type ApprovalOptions struct {
	// Max bounds the tokens kept (pending, used and expired alike) so
	// that clients cannot grow the server's memory; the oldest is
	// forgotten first. Default DefaultMaxApprovals.
	Max int
	// MaxPerSession bounds one session's tokens, so that one client
	// cannot push every other session's pending approvals out; its own
	// oldest goes first. Default DefaultMaxApprovalsPerSession.
	MaxPerSession int
	// Now is the clock; default time.Now.
	Now func() time.Time
}

// Approvals holds single-use approval tokens: vial issues one when it asks
// a human to approve a call, bound to the session and to the digest of
// the exact call (Digest), and redeems it when the answer comes back. A
// model cannot approve itself: it cannot guess a token (256 random bits),
// reuse one, use another session's, or change the call under one.
//
// Tokens are kept as their SHA-256, so a memory dump does not yield usable
// tokens and a lookup's timing depends on a hash, not on the token; the
// matched entry is then compared in constant time.
//
// An Approvals is safe for concurrent use.
type Approvals struct {
	mu         sync.Mutex
	now        func() time.Time
	max        int
	perSession int
	byKey      map[[32]byte]*list.Element // of *grant
	order      *list.List                 // oldest first
	sessions   map[string]int             // tokens held per session
}

type grant struct {
	key     [32]byte
	session string
	digest  [32]byte // sha256 of the digest string, for a fixed-size constant-time compare
	expires time.Time
	used    bool
}

// NewApprovals returns an empty token store.
func NewApprovals(o ApprovalOptions) *Approvals {
	a := &Approvals{now: o.Now, max: o.Max, perSession: o.MaxPerSession,
		byKey: map[[32]byte]*list.Element{}, order: list.New(), sessions: map[string]int{}}
	if a.now == nil {
		a.now = time.Now
	}
	if a.max <= 0 {
		a.max = DefaultMaxApprovals
	}
	if a.perSession <= 0 {
		a.perSession = DefaultMaxApprovalsPerSession
	}
	a.perSession = min(a.perSession, a.max)
	return a
}

// Issue returns a new token for session, valid for one Redeem of the call
// with this digest within ttl. A ttl of zero or less gives a token that has
// already expired: an approval never outlives what the caller asked for.
func (a *Approvals) Issue(session, digest string, ttl time.Duration) (token string) {
	var raw [32]byte
	rand.Read(raw[:]) // never fails (crypto/rand panics rather than return weak bytes)
	token = base64.RawURLEncoding.EncodeToString(raw[:])
	g := &grant{key: sha256.Sum256([]byte(token)), session: session,
		digest: sha256.Sum256([]byte(digest))}

	a.mu.Lock()
	defer a.mu.Unlock()
	g.expires = a.now().Add(ttl)
	if a.sessions[session] >= a.perSession {
		a.evict(func(o *grant) bool { return o.session == session })
	}
	if a.order.Len() >= a.max {
		a.evict(func(*grant) bool { return true })
	}
	a.byKey[g.key] = a.order.PushBack(g)
	a.sessions[session]++
	return token
}

// evict forgets the oldest token that pick accepts, preferring one that
// can no longer be redeemed (used or expired).
func (a *Approvals) evict(pick func(*grant) bool) {
	now := a.now()
	var victim *list.Element
	for e := a.order.Front(); e != nil; e = e.Next() {
		g := e.Value.(*grant)
		if !pick(g) {
			continue
		}
		if g.used || !now.Before(g.expires) {
			victim = e
			break
		}
		if victim == nil {
			victim = e
		}
	}
	if victim != nil {
		a.remove(victim)
	}
}

func (a *Approvals) remove(e *list.Element) {
	g := e.Value.(*grant)
	a.order.Remove(e)
	delete(a.byKey, g.key)
	if a.sessions[g.session]--; a.sessions[g.session] <= 0 {
		delete(a.sessions, g.session)
	}
}

// Redeem spends token for a call with digest in session. It returns nil
// once for a token Issue returned for this session and digest, before it
// expires; otherwise an error wrapping one of ErrTokenUnknown,
// ErrTokenSession, ErrTokenReplayed, ErrTokenExpired or ErrTokenArgs (in
// the order they are checked). A token presented by another session stays
// valid for its own; one presented with other arguments is spent, since
// the approved call was not the one made.
func (a *Approvals) Redeem(session, token, digest string) error {
	key := sha256.Sum256([]byte(token))
	want := sha256.Sum256([]byte(digest))
	a.mu.Lock()
	defer a.mu.Unlock()
	e, ok := a.byKey[key]
	if !ok {
		return fmt.Errorf("redeeming approval: %w", ErrTokenUnknown)
	}
	g := e.Value.(*grant)
	if subtle.ConstantTimeCompare(g.key[:], key[:]) != 1 {
		return fmt.Errorf("redeeming approval: %w", ErrTokenUnknown)
	}
	switch {
	case g.session != session:
		return fmt.Errorf("redeeming approval: %w", ErrTokenSession)
	case g.used:
		return fmt.Errorf("redeeming approval: %w", ErrTokenReplayed)
	case !a.now().Before(g.expires):
		g.used = true
		return fmt.Errorf("redeeming approval: %w", ErrTokenExpired)
	}
	g.used = true
	if subtle.ConstantTimeCompare(g.digest[:], want[:]) != 1 {
		return fmt.Errorf("redeeming approval: %w", ErrTokenArgs)
	}
	return nil
}

// Forget drops every token of session (when it ends): its pending
// approvals can no longer be redeemed.
func (a *Approvals) Forget(session string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for e := a.order.Front(); e != nil; {
		next := e.Next()
		if e.Value.(*grant).session == session {
			a.remove(e)
		}
		e = next
	}
}

// Len returns the number of tokens held, used and expired ones included.
func (a *Approvals) Len() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.order.Len()
}
