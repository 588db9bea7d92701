package service

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/observe"
	"github.com/vial-run/vial/runtime"
)

// The pool keeps sandboxes warm — started, their driver ready — so that
// create_context, a session's first default context and execute_python
// hand one out instead of starting one (seed 002: a session pool, three
// sessions, a sixty-minute lifetime, renewed).
//
// Members are kept per environment, language and workspace kind. A
// private member has a workspace of its own (create_context,
// execute_python). A shared member was started with a workspace that
// outlives it: the first default context of a session that has no
// workspace yet takes it, and its workspace becomes the session's shared
// one. Environments are warmed when they are first used (the agent's own
// from the start). Members hold admission slots like every sandbox, and
// give them up first: a cold start that finds no free slot closes a warm
// member to make room. A member found dead by the periodic health check,
// or older than the lifetime, is replaced.

// PoolOptions configure the pool. The zero value keeps no sandbox warm.
type PoolOptions struct {
	// Size is how many warm sandboxes with a private workspace to keep for
	// each environment and language in use (plus one whose workspace a new
	// session adopts); 0 disables the pool.
	Size int
	// Lifetime replaces a member this long after it started (default 60
	// minutes). A context handed out lives its own MaxLifetime from then.
	Lifetime time.Duration
	// Wait is how long a request waits for a member when none is warm
	// and one is being started; 0 does not wait.
	Wait time.Duration
	// FailWhenEmpty refuses a request that finds no member within Wait,
	// instead of starting a sandbox on demand (the default).
	FailWhenEmpty bool
	// Languages are kept warm (default: python).
	Languages []Language
	// HealthInterval is how often every member is pinged (default 30 s).
	HealthInterval time.Duration
}

type poolKey struct {
	env    string
	lang   Language
	shared bool
}

func (k poolKey) String() string {
	kind := "private"
	if k.shared {
		kind = "shared"
	}
	env := k.env
	if env == "" {
		env = "default"
	}
	return fmt.Sprintf("%s/%s/%s", env, k.lang, kind)
}

// member is a warm sandbox.
type member struct {
	c    *runtime.Context
	sb   Sandbox
	ws   Workspace // the shared kind's workspace; nil for private
	born time.Time
}

// close releases a member that is not handed out.
func (m *member) close() {
	m.c.Close()
	if m.ws != nil {
		m.ws.Close()
	}
}

// discard closes a member that is not handed out and reports it, so that
// the count of live and pooled sandboxes stays true.
func (p *pool) discard(m *member, why string) {
	m.close()
	p.svc.publish(observe.Event{Kind: observe.KindSandbox, Action: "stop", Reason: why, Pooled: true, Context: m.c.ID(),
		Language: string(m.c.Language())})
}

type pool struct {
	svc  *Service
	opts PoolOptions

	mu      sync.Mutex
	warm    map[poolKey][]*member
	filling map[poolKey]int
	envs    map[poolKey]Environment // keys in use, with their environment
	ready   chan struct{}           // closed and replaced when a member arrives
	closed  bool
	fills   sync.WaitGroup // refills in flight; close waits for them

	stop    chan struct{}
	stopped chan struct{}
}

func newPool(svc *Service, o PoolOptions) *pool {
	if o.Size <= 0 {
		return nil
	}
	if o.Lifetime <= 0 {
		o.Lifetime = 60 * time.Minute
	}
	if o.HealthInterval <= 0 {
		o.HealthInterval = 30 * time.Second
	}
	if len(o.Languages) == 0 {
		o.Languages = []Language{Python}
	}
	p := &pool{svc: svc, opts: o, warm: map[poolKey][]*member{}, filling: map[poolKey]int{}, envs: map[poolKey]Environment{},
		ready: make(chan struct{}), stop: make(chan struct{}), stopped: make(chan struct{})}
	go p.keeper()
	return p
}

// use marks env (all pooled languages, both kinds) as in use and starts
// filling it.
func (p *pool) use(env Environment) {
	if p == nil {
		return
	}
	p.mu.Lock()
	var keys []poolKey
	for _, lang := range p.opts.Languages {
		for _, shared := range []bool{true, false} {
			k := poolKey{env.Name, lang, shared}
			if _, ok := p.envs[k]; !ok {
				p.envs[k] = env
				keys = append(keys, k)
			}
		}
	}
	p.mu.Unlock()
	for _, k := range keys {
		p.goRefill(k)
	}
}

// pooled reports whether lang is kept warm.
func (p *pool) pooled(lang Language) bool {
	if p == nil {
		return false
	}
	for _, l := range p.opts.Languages {
		if l == lang {
			return true
		}
	}
	return false
}

// take hands out a warm member of k, waiting up to Wait when one is being
// started. It returns nil when there is none: the caller starts one (or,
// with FailWhenEmpty, gets an error).
func (p *pool) take(ctx context.Context, k poolKey, env Environment) (*member, error) {
	if p == nil || !p.pooled(k.lang) {
		return nil, nil
	}
	p.use(env)
	var deadline <-chan time.Time
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, nil
		}
		if ms := p.warm[k]; len(ms) > 0 {
			m := ms[len(ms)-1]
			p.warm[k] = ms[:len(ms)-1]
			p.mu.Unlock()
			p.goRefill(k)
			if dead, _ := m.c.Dead(); dead {
				p.discard(m, "it died while warm")
				continue
			}
			p.svc.publish(observe.Event{Kind: observe.KindSandbox, Action: "take", Pooled: true, Context: m.c.ID(),
				Language: string(k.lang), Environment: k.env})
			return m, nil
		}
		filling := p.filling[k] > 0
		ready := p.ready
		p.mu.Unlock()
		if !filling || p.opts.Wait <= 0 {
			break
		}
		if deadline == nil {
			t := time.NewTimer(p.opts.Wait)
			defer t.Stop()
			deadline = t.C
		}
		select {
		case <-ready:
		case <-deadline:
			deadline = closedChan
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if deadline == closedChan {
			break
		}
	}
	if p.opts.FailWhenEmpty {
		return nil, errorf(errdefs.ErrResourceExhausted, "no warm sandbox for %s became ready within %s, and the operator does not start sandboxes on demand; try again shortly", k, p.opts.Wait)
	}
	return nil, nil
}

var closedChan = func() chan time.Time { c := make(chan time.Time); close(c); return c }()

// size is how many members of k to keep: Size private ones, and one
// shared one (a session takes it only when it starts).
func (p *pool) size(k poolKey) int {
	if k.shared {
		return 1
	}
	return p.opts.Size
}

// goRefill refills k in the background, unless the pool is closed.
func (p *pool) goRefill(k poolKey) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.fills.Add(1)
	go func() {
		defer p.fills.Done()
		p.refill(k)
	}()
}

// refill starts members of k until Size are warm or being started. Members
// take free admission slots only: the pool never makes a request wait.
func (p *pool) refill(k poolKey) {
	for {
		p.mu.Lock()
		env, inUse := p.envs[k]
		if p.closed || !inUse || len(p.warm[k])+p.filling[k] >= p.size(k) {
			p.mu.Unlock()
			return
		}
		p.filling[k]++
		p.mu.Unlock()
		m, err := p.start(k, env)
		p.mu.Lock()
		p.filling[k]--
		if err != nil || p.closed {
			p.mu.Unlock()
			if m != nil {
				p.discard(m, "the pool was closed")
			}
			if err != nil && !errors.Is(err, errNoSlot) {
				p.svc.log.Warn("warming a sandbox", "pool", k.String(), "error", err)
			}
			return
		}
		p.warm[k] = append(p.warm[k], m)
		close(p.ready)
		p.ready = make(chan struct{})
		p.mu.Unlock()
		go p.watch(k, m)
	}
}

// watch discards m as soon as its sandbox ends while it is warm (killed
// from outside, an OOM kill, a crash), so that the pool's count stays true
// and a replacement starts at once rather than at the next health check.
// A member handed out is its context's to notice.
func (p *pool) watch(k poolKey, m *member) {
	select {
	case <-m.sb.Done():
	case <-p.stop:
		return
	}
	p.mu.Lock()
	i := slices.Index(p.warm[k], m)
	if i >= 0 {
		p.warm[k] = slices.Delete(p.warm[k], i, i+1)
	}
	p.mu.Unlock()
	if i < 0 {
		return
	}
	_, why := m.c.Dead()
	p.svc.log.Warn("a warm sandbox ended", "pool", k.String(), "context", m.c.ID(), "why", why)
	p.discard(m, "it died while warm")
	p.goRefill(k)
}

var errNoSlot = errors.New("no free sandbox slot")

// start starts one member of k.
func (p *pool) start(k poolKey, env Environment) (_ *member, err error) {
	svc := p.svc
	release, ok := svc.adm.tryAcquire()
	if !ok {
		return nil, errNoSlot
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var ws Workspace
	if k.shared {
		if ws, err = svc.provider.NewWorkspace(ctx, env); err != nil {
			release()
			return nil, err
		}
	}
	t0 := time.Now()
	sb, err := svc.provider.Start(ctx, StartRequest{Language: k.lang, Env: env, Workspace: ws, DriverEnv: svc.driverEnv()})
	if err != nil {
		release()
		if ws != nil {
			ws.Close()
		}
		return nil, startError(k.lang, env, err)
	}
	co := svc.opts.Context
	co.ID = runtime.NewContextID()
	co.Language = k.lang
	co.Environment = env.Name
	co.Logger = svc.log
	c, err := runtime.NewContext(ctx, &admitted{Sandbox: sb, release: release}, co)
	if err != nil {
		if ws != nil {
			ws.Close()
		}
		return nil, startError(k.lang, env, err)
	}
	svc.publish(observe.Event{Kind: observe.KindSandbox, Action: "start", Pooled: true, Context: c.ID(),
		Language: string(k.lang), Environment: env.Name, Runtime: env.Runtime, Image: env.Image, Duration: time.Since(t0)})
	return &member{c: c, sb: sb, ws: ws, born: time.Now()}, nil
}

// evict closes one warm member to free its admission slot for a request;
// it reports whether it did.
func (p *pool) evict() bool {
	if p == nil {
		return false
	}
	p.mu.Lock()
	var victim *member
	for k, ms := range p.warm {
		if len(ms) > 0 {
			victim = ms[0]
			p.warm[k] = ms[1:]
			break
		}
	}
	p.mu.Unlock()
	if victim == nil {
		return false
	}
	p.discard(victim, "its slot went to a request")
	return true
}

// keeper pings every member and replaces dead and old ones.
func (p *pool) keeper() {
	defer close(p.stopped)
	t := time.NewTicker(p.opts.HealthInterval)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
			p.check()
		}
	}
}

// pingTimeout bounds one member's health check: a driver answers a ping
// at once (a round trip of well under a millisecond), so one that has not
// answered in this long is hung.
const pingTimeout = 5 * time.Second

// check pings every warm member through its driver's protocol (a ping the
// driver answers without touching the interpreter, and that reads no
// usage); dead, hung and old ones are closed and their kinds refilled.
func (p *pool) check() {
	p.mu.Lock()
	all := p.warm
	p.warm = map[poolKey][]*member{}
	p.mu.Unlock()
	for k, ms := range all {
		var keep []*member
		for _, m := range ms {
			if time.Since(m.born) >= p.opts.Lifetime {
				p.discard(m, "it reached the pool lifetime")
				continue
			}
			ctx, cancel := context.WithTimeout(context.Background(), min(pingTimeout, p.opts.HealthInterval))
			err := m.c.Ping(ctx)
			cancel()
			if err != nil {
				p.svc.log.Warn("replacing an unhealthy warm sandbox", "pool", k.String(), "context", m.c.ID(), "error", err)
				p.discard(m, "it failed its health check")
				continue
			}
			keep = append(keep, m)
		}
		p.mu.Lock()
		p.warm[k] = append(p.warm[k], keep...)
		p.mu.Unlock()
		p.goRefill(k)
	}
}

// stats reports the warm members per kind, for metrics and doctor.
func (p *pool) stats() map[string]int {
	out := map[string]int{}
	if p == nil {
		return out
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, ms := range p.warm {
		out[k.String()] = len(ms)
	}
	return out
}

// close stops the keeper and closes every warm member.
func (p *pool) close() {
	if p == nil {
		return
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	all := p.warm
	p.warm = nil
	p.mu.Unlock()
	close(p.stop)
	<-p.stopped
	p.fills.Wait() // a member finishing its start now is closed by its refill
	var wg sync.WaitGroup
	for _, ms := range all {
		for _, m := range ms {
			wg.Go(func() { p.discard(m, "the pool was closed") })
		}
	}
	wg.Wait()
}
