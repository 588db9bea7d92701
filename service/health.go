package service

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/vial-run/vial/runtime"
)

// EnvHealth is the result of checking one environment with a real
// sandbox.
type EnvHealth struct {
	Environment string // "" for the agent's own
	Runtime     string
	Image       string
	OK          bool
	Took        time.Duration // start to a first answer
	Err         error
}

// Health starts a real sandbox in each environment (the agent's own and
// every named one a model may select), runs a no-op through its python
// driver, and stops it: the start-up check, and `vial doctor`'s. The
// checks run in parallel, each within a minute; they take admission slots
// like any sandbox.
func (s *Service) Health(ctx context.Context) []EnvHealth {
	envs := []Environment{s.opts.Default}
	for _, name := range slices.Sorted(maps.Keys(s.opts.Environments)) {
		if e := s.opts.Environments[name]; e.Refused == "" {
			envs = append(envs, e)
		}
	}
	out := make([]EnvHealth, len(envs))
	var wg sync.WaitGroup
	for i, env := range envs {
		wg.Go(func() { out[i] = s.check(ctx, env) })
	}
	wg.Wait()
	return out
}

func (s *Service) check(ctx context.Context, env Environment) EnvHealth {
	h := EnvHealth{Environment: env.Name, Runtime: env.Runtime, Image: env.Image}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t0 := time.Now()
	release, err := s.adm.acquire(ctx, "a health check")
	if err != nil {
		h.Err = err
		return h
	}
	sb, err := s.provider.Start(ctx, StartRequest{Language: Python, Env: env, DriverEnv: s.driverEnv()})
	if err != nil {
		release()
		h.Err = startError(Python, env, err)
		return h
	}
	co := s.opts.Context
	co.ID = runtime.NewContextID()
	co.Language = Python
	co.Logger = s.log
	c, err := runtime.NewContext(ctx, &admitted{Sandbox: sb, release: release}, co)
	if err != nil {
		h.Err = startError(Python, env, err)
		return h
	}
	defer c.Close()
	// The driver's ping (what the pool's periodic check uses), then a
	// no-op through the interpreter itself: the image can run code.
	err = c.Ping(ctx)
	var res runtime.ExecResult
	if err == nil {
		res, err = c.Exec(ctx, runtime.ExecRequest{Code: "pass", Timeout: 10 * time.Second})
	}
	switch {
	case err != nil:
		h.Err = err
	case res.Dead || res.TimedOut || res.Error != nil:
		h.Err = fmt.Errorf("the driver did not answer a no-op cleanly (%s)", runOutcome(res))
	default:
		h.OK = true
	}
	h.Took = time.Since(t0)
	return h
}

// PoolStats reports the warm sandboxes per environment, language and
// workspace kind.
func (s *Service) PoolStats() map[string]int { return s.pool.stats() }
