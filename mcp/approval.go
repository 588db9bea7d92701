package mcp

import (
	"context"
	"errors"
	"log/slog"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"

	"github.com/vial-run/vial/service"
)

// Human approval over MCP. The service decides whether a call needs a
// person and issues a single-use token bound to the exact call; this file
// asks the person with MCP elicitation and brings the answer back:
//
//   - a client of protocol 2026-07-28 gets an input_required result (an
//     elicitation keyed "approval", the token as requestState) and calls
//     again with the answer;
//   - an older client is asked with elicitation/create while the call
//     waits, at most the approval timeout; silence is a denial.
//
// Only a client that declared the elicitation capability is asked (mcp-go
// does not check it): for any other the service denies, naming the rule
// and what the operator can do. An answer the client sends without vial's
// request — or with a token vial did not issue, an old one, or for other
// arguments — is handed to the service, which refuses it.

// approvalKey is the elicitation's key among the input requests.
const approvalKey = "approval"

// approvalSchema is the form a person answers: one yes/no field (flat
// primitive fields are all some clients render).
var approvalSchema = map[string]any{
	"type": "object",
	"properties": map[string]any{
		"approve": map[string]any{"type": "boolean", "title": "Approve", "description": "Run exactly what is shown above."},
	},
	"required": []string{"approve"},
}

// asking is what the call brings for the service: whether a person can be
// asked, and the answer to an earlier request, if it carries one.
func (s *Server) asking(ctx context.Context, req mcpgo.CallToolRequest) service.Asking {
	p := req.Params.MultiRoundTripParams
	if p.RequestState == "" && len(p.InputResponses) == 0 {
		return service.Asking{CanAsk: canElicit(ctx)}
	}
	a := &service.Answer{Token: p.RequestState, Outcome: "error", By: clientName(ctx) + " (input response)"}
	if r := mcpserver.ElicitationResponse(p.InputResponses, approvalKey); r != nil {
		a.Outcome = string(r.Action)
		a.Approved = r.Action == mcpgo.ElicitationResponseActionAccept && approved(r.Content)
	}
	return service.Asking{Answer: a}
}

func approved(content any) bool {
	m, ok := content.(map[string]any)
	if !ok {
		return false
	}
	v, ok := m["approve"].(bool)
	return ok && v
}

// canElicit reports whether the client declared elicitation for this
// request (2026-07-28: in the request; earlier: at initialize).
func canElicit(ctx context.Context) bool {
	if info := mcpserver.RequestProtocolInfoFromContext(ctx); info != nil && info.Modern {
		return info.ClientCapabilities != nil && info.ClientCapabilities.Elicitation != nil
	}
	cs := mcpserver.ClientSessionFromContext(ctx)
	wi, ok := cs.(mcpserver.SessionWithClientInfo)
	if !ok {
		return false
	}
	if _, ok := cs.(mcpserver.SessionWithElicitation); !ok {
		return false
	}
	return wi.GetClientCapabilities().Elicitation != nil
}

func clientName(ctx context.Context) string {
	if info := mcpserver.RequestProtocolInfoFromContext(ctx); info != nil && info.ClientInfo != nil {
		return info.ClientInfo.Name + "/" + info.ClientInfo.Version
	}
	if wi, ok := mcpserver.ClientSessionFromContext(ctx).(mcpserver.SessionWithClientInfo); ok {
		ci := wi.GetClientInfo()
		return ci.Name + "/" + ci.Version
	}
	return "unknown client"
}

// approve asks a person about ar and serves the call again with the
// answer; for a 2026-07-28 client it returns the input request instead.
func (s *Server) approve(ctx context.Context, c *call, h func(*Server, context.Context, *call) (*mcpgo.CallToolResult, error), ar *service.ApprovalRequired) (*mcpgo.CallToolResult, error) {
	params := mcpgo.ElicitationParams{
		Message:         "vial asks for your approval (" + ar.Rule + ").\n\n" + ar.Summary.Text(),
		RequestedSchema: approvalSchema,
	}
	c.note(slog.String("approval", "asked"))
	if mcpserver.IsModernRequest(ctx) {
		c.outcome = "approval_requested"
		return mcpserver.NewInputRequestBuilder(ar.Token).Elicit(approvalKey, params).ToolResult(), nil
	}
	start := time.Now()
	answer := &service.Answer{Token: ar.Token, By: clientName(ctx) + " (elicitation)"}
	ectx, cancel := context.WithTimeout(ctx, time.Until(ar.Expires))
	res, err := s.mcp.RequestElicitation(ectx, mcpgo.ElicitationRequest{
		Request: mcpgo.Request{Method: string(mcpgo.MethodElicitationCreate)},
		Params:  params,
	})
	cancel()
	answer.Waited = time.Since(start)
	switch {
	case err == nil && res != nil:
		answer.Outcome = string(res.Action)
		answer.Approved = res.Action == mcpgo.ElicitationResponseActionAccept && approved(res.Content)
	case errors.Is(ectx.Err(), context.DeadlineExceeded) && ctx.Err() == nil:
		answer.Outcome = "timeout"
	case ctx.Err() != nil:
		return nil, ctx.Err()
	default:
		answer.Outcome = "error"
		c.note(slog.String("elicitation_error", err.Error()))
	}
	c.note(slog.String("approval", answer.Outcome), slog.Duration("approval_wait", answer.Waited))
	return h(s, service.WithAsking(ctx, service.Asking{Answer: answer}), c)
}
