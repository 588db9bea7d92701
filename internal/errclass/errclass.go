// Package errclass is the one place where vial's error classes meet the
// outside world. Every vial package classifies its errors with containerd's
// errdefs (errdefs.ErrNotFound, ErrInvalidArgument, ...); each front end
// turns a class into its own answer — an exit status for the CLI, an HTTP
// status for the REST API and the HTTP listener, a lead-in for an MCP
// result — through this table, so the same failure gets the same answer
// everywhere and no front end parses messages.
package errclass

import (
	"context"
	"errors"
	"net/http"

	"github.com/containerd/errdefs"
)

// Class is an error's class as the front ends see it.
type Class int

// The classes, after errdefs. Unknown is an error without a class: an
// internal failure whose text must not reach a model or an HTTP client.
const (
	Unknown Class = iota
	Invalid
	NotFound
	AlreadyExists
	PermissionDenied
	Exhausted
	FailedPrecondition
	Conflict
	OutOfRange
	NotImplemented
	Unavailable
	Unauthenticated
	Canceled
	DeadlineExceeded
	Internal
)

var names = [...]string{
	Unknown:            "unknown",
	Invalid:            "invalid argument",
	NotFound:           "not found",
	AlreadyExists:      "already exists",
	PermissionDenied:   "permission denied",
	Exhausted:          "resource exhausted",
	FailedPrecondition: "failed precondition",
	Conflict:           "conflict",
	OutOfRange:         "out of range",
	NotImplemented:     "not implemented",
	Unavailable:        "unavailable",
	Unauthenticated:    "unauthenticated",
	Canceled:           "canceled",
	DeadlineExceeded:   "deadline exceeded",
	Internal:           "internal",
}

func (c Class) String() string {
	if c < 0 || int(c) >= len(names) {
		return "unknown"
	}
	return names[c]
}

// Of returns err's class; nil has class Unknown (callers check nil first).
// Context cancellation and deadlines count as Canceled and
// DeadlineExceeded wherever they are in the chain.
func Of(err error) Class {
	switch {
	case err == nil:
		return Unknown
	case errors.Is(err, context.Canceled):
		return Canceled
	case errors.Is(err, context.DeadlineExceeded):
		return DeadlineExceeded
	}
	// errdefs.Resolve returns the outermost class in the chain, so an error
	// rewrapped with a more specific class is answered by that class.
	switch errdefs.Resolve(err) {
	case errdefs.ErrInvalidArgument:
		return Invalid
	case errdefs.ErrNotFound:
		return NotFound
	case errdefs.ErrAlreadyExists:
		return AlreadyExists
	case errdefs.ErrPermissionDenied:
		return PermissionDenied
	case errdefs.ErrResourceExhausted:
		return Exhausted
	case errdefs.ErrFailedPrecondition:
		return FailedPrecondition
	case errdefs.ErrConflict:
		return Conflict
	case errdefs.ErrOutOfRange:
		return OutOfRange
	case errdefs.ErrNotImplemented:
		return NotImplemented
	case errdefs.ErrUnavailable:
		return Unavailable
	case errdefs.ErrUnauthenticated:
		return Unauthenticated
	case errdefs.ErrInternal, errdefs.ErrDataLoss:
		return Internal
	}
	return Unknown
}

// AboutRequest reports whether errors of class c are about the caller's
// own request — their text may be shown to whoever sent it (after host
// paths are scrubbed) — rather than about vial or the host, whose details
// go to the operator's log only.
func (c Class) AboutRequest() bool {
	switch c {
	case Invalid, NotFound, AlreadyExists, PermissionDenied, Exhausted, FailedPrecondition, Conflict, OutOfRange, NotImplemented, Unauthenticated:
		return true
	}
	return false
}

// HTTPStatus is the HTTP status for class c.
func (c Class) HTTPStatus() int {
	switch c {
	case Invalid:
		return http.StatusBadRequest
	case NotFound:
		return http.StatusNotFound
	case AlreadyExists, Conflict:
		return http.StatusConflict
	case PermissionDenied:
		return http.StatusForbidden
	case Exhausted:
		return http.StatusTooManyRequests
	case FailedPrecondition:
		return http.StatusPreconditionFailed
	case OutOfRange:
		return http.StatusUnprocessableEntity
	case NotImplemented:
		return http.StatusNotImplemented
	case Unavailable:
		return http.StatusServiceUnavailable
	case Unauthenticated:
		return http.StatusUnauthorized
	case Canceled:
		return 499 // client closed request, as nginx
	case DeadlineExceeded:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// Exit statuses of the CLI, after timeout(1), docker and podman.
const (
	ExitFailed   = 125 // vial itself could not do the job
	ExitTimeout  = 124 // the time limit killed the program
	ExitCanceled = 130 // interrupted (SIGINT/SIGTERM)
)

// ExitCode is the exit status of a CLI command that failed with class c.
// Every failure of vial's own is 125 (as docker and podman do, so a
// program's own statuses stay distinguishable), except an interruption
// (130) and a deadline (124).
func (c Class) ExitCode() int {
	switch c {
	case Canceled:
		return ExitCanceled
	case DeadlineExceeded:
		return ExitTimeout
	}
	return ExitFailed
}
