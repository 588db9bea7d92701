// Package api is vial's REST front end for operators: seed 001's
// configuration API under /api/v1/execution, and beside it the live view
// of the server — every session's contexts, the queue of tool calls
// waiting for a person's approval, metrics, the tail of the audit record,
// and image builds that stream their progress. The page in package web is
// its one built-in client; the OpenAPI document at /api/v1/openapi.json
// describes every shape.
//
// The package reads no configuration file and starts no sandbox itself.
// What it serves comes through small interfaces that cmd/vial implements:
// Config (over package config, which only cmd/vial may import), Contexts
// (*service.Service), Approvals, MetricsSource, AuditSource and
// ImageBuilder. A nil optional source answers 501.
//
// # Security
//
// Every request under /api/ but the OpenAPI document needs the operator's
// token ("Authorization: Bearer TOKEN", compared in constant time). It is
// not the MCP clients' token: an MCP client must never answer its own
// approvals or see other sessions' contexts, so the two are distinct and
// the MCP token gets 401 here.
//
// The token travels in a header, never in a cookie or a URL. A browser
// attaches a header only when a script of the page's own origin sets it,
// so another site cannot make a visitor's browser send an authenticated
// request (CSRF): a cross-site form cannot set headers, and a cross-site
// fetch with an Authorization header needs a CORS preflight that this
// API never approves. State-changing requests are additionally refused
// when the browser says they are cross-origin (Sec-Fetch-Site, or an
// Origin that is not the Host), with net/http's CrossOriginProtection.
// Every response forbids framing (X-Frame-Options DENY, CSP
// frame-ancestors 'none') and sniffing, and is not cached. On a loopback
// listener a request whose Host is not a loopback name is refused, so a
// DNS-rebinding page cannot reach the API through the operator's browser.
//
// Names and IDs from the URL (agents, templates, contexts, approvals) are
// checked against a strict pattern before they reach anything that may
// use them as a path component: "../x", NUL bytes and overlong names get
// 400. Request bodies are bounded (MaxBodyBytes, 413 above it).
//
// # Errors
//
// Every error is JSON, {"error": "...", "class": "...", "problems": [...]},
// and its status is decided in one place (statusOf): a configuration that
// does not validate is 422 with every problem at its file:line:col;
// otherwise the error's errdefs class decides, through
// internal/errclass.Class.HTTPStatus. Messages of classes that are not
// about the request (internal failures) are replaced by a generic text and
// logged.
package api
