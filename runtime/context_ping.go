package runtime

import (
	"context"
	"fmt"
)

// Ping checks that the context's driver answers: it sends a ping message,
// which every driver answers with a pong at once without touching the
// interpreter's state, and waits for the pong. It waits for its turn
// behind running calls, like Exec. It reads nothing else (no usage, no
// cgroup): a health check costs a round trip and nothing more.
//
// A driver that answers anything else has broken the protocol, and one
// whose process has exited is gone: either way the context is dead and
// Ping returns an ErrNotFound-class error. If ctx ends first, Ping returns
// ctx's error at once and keeps the context's turn in the background for
// up to the context's grace period: a pong arriving then is taken and the
// context stays usable; without one the driver is hung, and the context
// is stopped ("it did not answer a health check").
func (c *Context) Ping(ctx context.Context) error {
	if err := c.takeTurn(ctx); err != nil {
		return err
	}
	id, err := c.begin(false)
	if err != nil {
		<-c.turn
		return err
	}
	written := c.send((&wireMsg{Kind: kindPing, ID: id}).encode())
	err, done := c.awaitPong(id, ctx.Done(), written)
	if done {
		<-c.turn
		return err
	}
	go func() {
		defer func() { <-c.turn }()
		gctx, cancel := context.WithTimeout(context.Background(), c.opts.Grace)
		defer cancel()
		if _, done := c.awaitPong(id, gctx.Done(), nil); !done {
			c.markDead(fmt.Sprintf("it did not answer a health check within %v", c.opts.Grace))
		}
	}()
	return ctx.Err()
}

// awaitPong waits for the pong to ping id. done is false when stop fired
// first.
func (c *Context) awaitPong(id uint64, stop <-chan struct{}, written <-chan error) (err error, done bool) {
	deadErr := func(reason string) error {
		c.markDead(reason)
		return fmt.Errorf("context %s is dead: %s: %w", c.opts.ID, reason, ErrNotFound)
	}
	for {
		select {
		case m, ok := <-c.msgs:
			if !ok {
				return deadErr("its process exited"), true
			}
			if m.Kind != kindPong || m.ID != id {
				c.log.Warn("unexpected answer to a ping", "kind", m.Kind, "id", m.ID, "want", id)
				return deadErr("its driver broke the protocol"), true
			}
			return nil, true
		case werr := <-written:
			written = nil
			if werr != nil {
				c.log.Debug("writing to driver", "err", werr)
			}
		case <-c.t.Done():
			return deadErr("its process exited"), true
		case <-stop:
			return nil, false
		}
	}
}
