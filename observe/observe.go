// Package observe carries what vial does as events: every tool call, every
// sandbox started or stopped, every policy decision, every network
// connection decision. The application core publishes them on a Bus; the
// log, the metrics and the audit record subscribe. Producers never know
// who listens, and a consumer sees every front end's work the same way.
//
// Events carry no code, file contents or secrets: an argument digest
// stands for a call's arguments.
package observe

import (
	"sync"
	"time"
)

// Kind is what an event is about.
type Kind string

// Event kinds.
const (
	// KindCall is one tool call served by the core, after it ended.
	KindCall Kind = "call"
	// KindSandbox is a sandbox (a context, a one-shot run) started, stopped,
	// expired or replaced.
	KindSandbox Kind = "sandbox"
	// KindDecision is a policy decision about a call: allowed, denied,
	// asked, approved, declined.
	KindDecision Kind = "decision"
	// KindEgress is a network connection decision of a sandbox's proxy.
	KindEgress Kind = "egress"
)

// Event is one thing that happened. Fields that do not apply to a kind are
// zero and left out of JSON.
type Event struct {
	Time time.Time `json:"time"`
	Kind Kind      `json:"kind"`

	// Who asked.
	Session string `json:"session,omitempty"`
	Client  string `json:"client,omitempty"` // MCP client name/version
	Agent   string `json:"agent,omitempty"`

	// What was asked.
	Tool        string `json:"tool,omitempty"`
	ArgsDigest  string `json:"args_digest,omitempty"` // sha256 of the canonical arguments
	Context     string `json:"context,omitempty"`
	Language    string `json:"language,omitempty"`
	Environment string `json:"environment,omitempty"`
	Runtime     string `json:"runtime,omitempty"`
	Image       string `json:"image,omitempty"` // image digest (or name)

	// How it ended. Outcome is one word: ok, program_error, timed_out,
	// oom_killed, dead, denied, tool_error, internal_error, cached, ...
	Outcome  string        `json:"outcome,omitempty"`
	Error    string        `json:"error,omitempty"`
	Duration time.Duration `json:"duration_ns,omitempty"`
	Usage    *Usage        `json:"usage,omitempty"`
	Limits   *Limits       `json:"limits,omitempty"`

	// Sandbox events.
	Action string `json:"action,omitempty"` // start, stop, expire, reset, ...
	Reason string `json:"reason,omitempty"`
	Pooled bool   `json:"pooled,omitempty"`

	// Decision events.
	Decision   string        `json:"decision,omitempty"` // allow, deny, ask, approved, declined, timeout, ...
	Rule       string        `json:"rule,omitempty"`
	AnsweredBy string        `json:"answered_by,omitempty"`
	Waited     time.Duration `json:"waited_ns,omitempty"`

	// Egress events. Sandbox is the sandbox whose network it is (as
	// `vial ps` shows it); "" for a request vial made itself.
	Sandbox   string `json:"sandbox,omitempty"`
	Host      string `json:"host,omitempty"`
	Port      int    `json:"port,omitempty"`
	BytesUp   int64  `json:"bytes_up,omitempty"`
	BytesDown int64  `json:"bytes_down,omitempty"`
}

// Usage is what a call cost inside its sandbox.
type Usage struct {
	CPU        time.Duration `json:"cpu_ns"`
	PeakMemory uint64        `json:"peak_memory_bytes"`
}

// Limits are the limits a call ran under.
type Limits struct {
	Timeout     time.Duration `json:"timeout_ns"`
	MemoryBytes int64         `json:"memory_bytes"`
	CPUs        float64       `json:"cpus"`
	Pids        int64         `json:"pids"`
	DiskBytes   int64         `json:"disk_bytes"`
}

// Bus fans events out to subscribers. The zero value is ready; a nil *Bus
// drops everything. Safe for concurrent use.
//
// Subscribers are called synchronously, in subscription order, on the
// publisher's goroutine: they must be quick (append to a file, bump a
// counter). A subscriber that panics is skipped for that event; the
// publisher never fails because of a consumer.
type Bus struct {
	mu   sync.RWMutex
	next int
	subs []sub
}

type sub struct {
	id int
	fn func(Event)
}

// Subscribe registers fn and returns a function that unregisters it.
func (b *Bus) Subscribe(fn func(Event)) (cancel func()) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.next++
	id := b.next
	b.subs = append(b.subs, sub{id, fn})
	return func() {
		b.mu.Lock()
		defer b.mu.Unlock()
		for i, s := range b.subs {
			if s.id == id {
				b.subs = append(b.subs[:i:i], b.subs[i+1:]...)
				return
			}
		}
	}
}

// Publish stamps e with the time (if unset) and hands it to every
// subscriber.
func (b *Bus) Publish(e Event) {
	if b == nil {
		return
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	b.mu.RLock()
	subs := b.subs
	b.mu.RUnlock()
	for _, s := range subs {
		call(s.fn, e)
	}
}

func call(fn func(Event), e Event) {
	defer func() { _ = recover() }()
	fn(e)
}
