package mcp

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vial-run/vial/service"
)

// maxHTTPSessions bounds the HTTP sessions vial keeps: a client that
// opens sessions without end makes the least recently used ones end.
const maxHTTPSessions = 1024

// sessions maps MCP sessions onto service sessions: the stdio client has
// one, and each streamable HTTP session has its own, so a client sees only
// its own contexts and workspace. It is also the HTTP transport's session
// ID manager: IDs are 256 random bits, issued by vial and checked against
// the ones it issued, so a client cannot reach another's session by
// guessing or forging an ID.
type sessions struct {
	srv *Server

	mu     sync.Mutex
	byID   map[string]*service.Session // MCP session ID → service session
	issued map[string]time.Time        // HTTP IDs issued and not terminated → last use
}

func newSessions(srv *Server) *sessions {
	return &sessions{srv: srv, byID: map[string]*service.Session{}, issued: map[string]time.Time{}}
}

// of returns the service session of the MCP session a call arrived on,
// opening it on first use.
func (ss *sessions) of(ctx context.Context) (*service.Session, error) {
	cs := mcpserver.ClientSessionFromContext(ctx)
	id, transport := "stdio", "stdio"
	if cs != nil {
		id = cs.SessionID()
	}
	if id == "" {
		// A sessionless request (a stateless HTTP revision) would share
		// every context with every other client: refused.
		return nil, fmt.Errorf("this request carries no MCP session; vial serves HTTP clients on session-based protocol revisions only: %w", errdefs.ErrFailedPrecondition)
	}
	if id != "stdio" {
		transport = "http"
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if transport == "http" {
		if _, ok := ss.issued[id]; !ok {
			return nil, fmt.Errorf("unknown MCP session: %w", errdefs.ErrNotFound)
		}
		ss.issued[id] = time.Now()
	}
	sess := ss.byID[id]
	if sess == nil {
		var err error
		sess, err = ss.srv.svc.OpenSession(service.SessionInfo{ID: sessionName(transport, id), Transport: transport})
		if err != nil {
			return nil, err
		}
		ss.byID[id] = sess
	}
	if wi, ok := cs.(mcpserver.SessionWithClientInfo); ok {
		if ci := wi.GetClientInfo(); ci.Name != "" {
			sess.SetClient(strings.TrimSpace(ci.Name + "/" + ci.Version))
		}
	}
	return sess, nil
}

// sessionName is the service session's name for an MCP session: "stdio",
// or "http-" and a digest of the HTTP session ID (the ID itself is a
// bearer secret and never appears in logs or events).
func sessionName(transport, id string) string {
	if transport == "stdio" {
		return "stdio"
	}
	sum := sha256.Sum256([]byte(id))
	return "http-" + hex.EncodeToString(sum[:6])
}

// end closes the service session of an MCP session that ended (an HTTP
// DELETE, an idle timeout, the end of stdio), stopping its sandboxes.
func (ss *sessions) end(id string) {
	ss.mu.Lock()
	sess := ss.byID[id]
	delete(ss.byID, id)
	delete(ss.issued, id)
	ss.mu.Unlock()
	if sess != nil {
		ss.srv.down.end(sess.ID())
		if err := sess.Close(); err != nil {
			ss.srv.log.Warn("closing a session", "session", sess.ID(), "error", err)
		}
	}
}

// Generate implements mcpserver.SessionIdManager.
func (ss *sessions) Generate() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	id := "vial-" + hex.EncodeToString(b[:])
	ss.mu.Lock()
	var evict []string
	for len(ss.issued)+1-len(evict) > maxHTTPSessions {
		oldest, at := "", time.Time{}
		for k, t := range ss.issued {
			if (oldest == "" || t.Before(at)) && !contains(evict, k) {
				oldest, at = k, t
			}
		}
		evict = append(evict, oldest)
	}
	ss.issued[id] = time.Now()
	ss.mu.Unlock()
	for _, k := range evict {
		ss.srv.log.Warn("too many HTTP sessions: ending the least recently used", "limit", maxHTTPSessions)
		ss.end(k)
	}
	return id
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// Validate implements mcpserver.SessionIdManager: only IDs vial issued and
// that have not ended are accepted.
func (ss *sessions) Validate(id string) (isTerminated bool, err error) {
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if _, ok := ss.issued[id]; !ok {
		return false, errors.New("unknown session")
	}
	return false, nil
}

// Terminate implements mcpserver.SessionIdManager: the session's
// sandboxes and workspace go at once.
func (ss *sessions) Terminate(id string) (isNotAllowed bool, err error) {
	ss.end(id)
	return false, nil
}
