package mcp

import (
	"context"
	"fmt"
	"sync"
	"time"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
	"github.com/vial-run/vial/internal/human"
)

// startProgress sends notifications/progress every s.progress while a call
// runs, if the request carries a progressToken. progress counts elapsed
// seconds and total is the time limit, so a client can draw a bar. The
// returned stop function ends the notifications and waits until none can
// be sent any more.
func (s *Server) startProgress(ctx context.Context, req mcpgo.CallToolRequest, limit time.Duration) (stop func()) {
	if req.Params.Meta == nil || req.Params.Meta.ProgressToken == nil {
		return func() {}
	}
	srv := mcpserver.ServerFromContext(ctx)
	if srv == nil {
		return func() {}
	}
	token := req.Params.Meta.ProgressToken
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		start := time.Now()
		t := time.NewTicker(s.progress)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case <-t.C:
				elapsed := time.Since(start)
				err := srv.SendNotificationToClient(ctx, string(mcpgo.MethodNotificationProgress), map[string]any{
					"progressToken": token,
					"progress":      elapsed.Seconds(),
					"total":         limit.Seconds(),
					"message":       fmt.Sprintf("running for %s (time limit %s)", human.Duration(elapsed.Round(time.Second)), human.Duration(limit)),
				})
				if err != nil {
					s.log.Debug("sending progress", "error", err)
				}
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
	}
}
