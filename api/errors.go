package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/containerd/errdefs"

	"github.com/vial-run/vial/internal/errclass"
)

// ConfigError is a configuration that does not validate: every problem,
// each at its file:line:col. It has class errdefs.ErrInvalidArgument and
// answers 422 (the request was well formed; its content is not a valid
// configuration).
type ConfigError struct {
	Problems []Problem
	Warnings []string
}

func (e *ConfigError) Error() string {
	switch len(e.Problems) {
	case 0:
		return "invalid configuration"
	case 1:
		return "invalid configuration: " + e.Problems[0].String()
	}
	more := "problems"
	if len(e.Problems) == 2 {
		more = "problem"
	}
	return fmt.Sprintf("invalid configuration: %s (and %d more %s)", e.Problems[0], len(e.Problems)-1, more)
}

// Unwrap returns the class.
func (e *ConfigError) Unwrap() error { return errdefs.ErrInvalidArgument }

// String formats p as file:line:col: message.
func (p Problem) String() string {
	switch {
	case p.File == "":
		return p.Message
	case p.Line == 0:
		return p.File + ": " + p.Message
	}
	return fmt.Sprintf("%s:%d:%d: %s", p.File, p.Line, p.Col, p.Message)
}

// errorBody is every error's JSON.
type errorBody struct {
	Error    string    `json:"error"`
	Class    string    `json:"class"`
	Problems []Problem `json:"problems,omitempty"`
	Warnings []string  `json:"warnings,omitempty"`
}

// statusOf is the one place an error becomes an HTTP status.
func statusOf(err error) int {
	var ce *ConfigError
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &ce):
		return http.StatusUnprocessableEntity
	case errors.As(err, &mb):
		return http.StatusRequestEntityTooLarge
	}
	return errclass.Of(err).HTTPStatus()
}

// writeError answers err. Errors about the request carry their message;
// anything else is logged and answered with a generic text, so that host
// details never reach the client.
func writeError(w http.ResponseWriter, r *http.Request, log *slog.Logger, err error) {
	status := statusOf(err)
	class := errclass.Of(err)
	body := errorBody{Error: err.Error(), Class: class.String()}
	var ce *ConfigError
	var mb *http.MaxBytesError
	switch {
	case errors.As(err, &ce):
		body.Class = "invalid configuration"
		body.Problems = ce.Problems
		body.Warnings = ce.Warnings
	case errors.As(err, &mb):
		body.Error = fmt.Sprintf("request body larger than %d bytes", mb.Limit)
		body.Class = "too large"
	case !class.AboutRequest():
		log.Error("api request failed", "method", r.Method, "path", r.URL.Path, "status", status, "error", err)
		body.Error = http.StatusText(status) + ": see the server's log"
	}
	writeJSON(w, status, body)
}

// writeJSON answers v as JSON with status.
func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b = []byte(`{"error": "encoding the answer failed", "class": "internal"}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

// invalidf is an error of class invalid argument.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), errdefs.ErrInvalidArgument)
}
