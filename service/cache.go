package service

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"time"
)

// Seed 000 keeps a result cache. vial keeps one for execute_python only —
// a self-contained script in a fresh sandbox — and only when the operator
// turns it on: the same code in the same environment, image and limits
// gives the cached result, which says that it is one. Stateful contexts
// are never cached: their result depends on what ran before.

// CacheOptions configure the result cache; the zero value turns it off.
type CacheOptions struct {
	Entries int           // results kept (least recently used go first); 0: no cache
	TTL     time.Duration // how long a result is served; 0: an hour
}

// ImageDigester is implemented by providers that know the digest of the
// image an environment runs, so that a cached result is never served for
// another image under the same name.
type ImageDigester interface {
	ImageDigest(name string) string
}

type resultCache struct {
	max int
	ttl time.Duration

	mu    sync.Mutex
	order *list.List // of *cached, most recently used first
	byKey map[string]*list.Element
}

type cached struct {
	key string
	res RunResult
	at  time.Time
}

func newResultCache(o CacheOptions) *resultCache {
	if o.Entries <= 0 {
		return nil
	}
	if o.TTL <= 0 {
		o.TTL = time.Hour
	}
	return &resultCache{max: o.Entries, ttl: o.TTL, order: list.New(), byKey: map[string]*list.Element{}}
}

// cacheKey identifies a one-shot run: the code, its language, the
// environment, the image's digest, the limits and the time limit.
func (s *Service) cacheKey(r RunRequest, env Environment, timeout time.Duration) string {
	digest := env.Image
	if d, ok := s.provider.(ImageDigester); ok {
		digest = d.ImageDigest(env.Image)
	}
	b, _ := json.Marshal([]any{r.Code, r.Language, env.Name, env.Runtime, digest, env.Limits.WithDefaults(), env.Env, timeout})
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (c *resultCache) get(key string) (RunResult, time.Time, bool) {
	if c == nil {
		return RunResult{}, time.Time{}, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.byKey[key]
	if !ok {
		return RunResult{}, time.Time{}, false
	}
	e := el.Value.(*cached)
	if time.Since(e.at) > c.ttl {
		c.order.Remove(el)
		delete(c.byKey, key)
		return RunResult{}, time.Time{}, false
	}
	c.order.MoveToFront(el)
	return e.res, e.at, true
}

// put keeps a result that says something about the code: not one cut
// short by a timeout, an OOM kill or a dead sandbox, which may not happen
// again.
func (c *resultCache) put(key string, res RunResult) {
	if c == nil || res.TimedOut || res.OOMKilled || res.Dead {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.byKey[key]; ok {
		c.order.Remove(el)
	}
	res.Notices = nil
	c.byKey[key] = c.order.PushFront(&cached{key: key, res: res, at: time.Now()})
	for c.order.Len() > c.max {
		last := c.order.Back()
		c.order.Remove(last)
		delete(c.byKey, last.Value.(*cached).key)
	}
}

// cachedNotice tells the caller a result is a cached one.
func cachedNotice(at time.Time) string {
	return fmt.Sprintf("This result is from the cache: the same code ran in the same environment, image and limits at %s, and the operator caches execute_python results. Nothing ran now.", at.UTC().Format(time.RFC3339))
}
