package mcp

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	mcpserver "github.com/mark3labs/mcp-go/server"
)

// Resource is a read-only MCP resource the server offers through
// resources/list and resources/read, e.g. vial's metrics. The package
// knows nothing of what it holds: Read produces the whole content on every
// read.
type Resource struct {
	// URI identifies the resource (e.g. "vial://metrics"); it needs a
	// scheme and must be unique among the server's resources.
	URI string
	// Name is a short name for people and models; "" uses URI.
	Name        string
	Description string
	// MIMEType is the content's type, e.g. "application/json".
	MIMEType string
	// Read returns the content. It is called on the request's goroutine
	// and should be quick. Its error goes to the log; the client gets a
	// generic error.
	Read func(ctx context.Context) ([]byte, error)
}

// checkResources validates the resources of Options.
func checkResources(rs []Resource) error {
	var errs []error
	seen := map[string]bool{}
	for _, r := range rs {
		u, err := url.Parse(r.URI)
		switch {
		case r.URI == "" || err != nil || u.Scheme == "":
			errs = append(errs, fmt.Errorf("resource %q: the URI needs a scheme (e.g. vial://metrics)", r.URI))
		case seen[r.URI]:
			errs = append(errs, fmt.Errorf("resource %q is given twice", r.URI))
		}
		seen[r.URI] = true
		if r.Read == nil {
			errs = append(errs, fmt.Errorf("resource %q has no Read function", r.URI))
		}
	}
	return errors.Join(errs...)
}

// addResources registers rs with the mcp-go server.
func (s *Server) addResources(rs []Resource) {
	for _, r := range rs {
		name := r.Name
		if name == "" {
			name = r.URI
		}
		opts := []mcpgo.ResourceOption{mcpgo.WithMIMEType(r.MIMEType)}
		if r.Description != "" {
			opts = append(opts, mcpgo.WithResourceDescription(r.Description))
		}
		s.mcp.AddResource(mcpgo.NewResource(r.URI, name, opts...), s.readResource(r))
	}
}

func (s *Server) readResource(r Resource) mcpserver.ResourceHandlerFunc {
	return func(ctx context.Context, req mcpgo.ReadResourceRequest) ([]mcpgo.ResourceContents, error) {
		b, err := r.Read(ctx)
		if err != nil {
			s.log.Error("reading a resource", "uri", r.URI, "error", err)
			return nil, fmt.Errorf("%s could not be read; the operator can find the cause in vial's log", r.URI)
		}
		if utf8.Valid(b) && textual(r.MIMEType) {
			return []mcpgo.ResourceContents{mcpgo.TextResourceContents{URI: r.URI, MIMEType: r.MIMEType, Text: string(b)}}, nil
		}
		return []mcpgo.ResourceContents{mcpgo.BlobResourceContents{URI: r.URI, MIMEType: r.MIMEType, Blob: base64.StdEncoding.EncodeToString(b)}}, nil
	}
}

// textual reports whether a MIME type is text a client can show as is.
func textual(mime string) bool {
	mime, _, _ = strings.Cut(mime, ";")
	return mime == "" || strings.HasPrefix(mime, "text/") || mime == "application/json" || strings.HasSuffix(mime, "+json")
}
