package runtime

import "errors"

// Error classes. Errors returned by this package wrap one of these so
// callers (the CLI, the MCP layer) can choose an answer with errors.Is
// without parsing messages.
var (
	// ErrNotFound: a named thing (image, context, runtime binary) does not exist.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the request itself is wrong (a bad limit, a hostile path).
	ErrInvalid = errors.New("invalid argument")
	// ErrUnavailable: the host cannot do this now (runtime missing, cgroups unusable).
	ErrUnavailable = errors.New("unavailable")
	// ErrExhausted: a configured maximum was reached (contexts, pool).
	ErrExhausted = errors.New("resource exhausted")
)
