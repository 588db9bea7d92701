// Package web is vial's operator page: one HTML file, a script and a
// style sheet, embedded in the binary and served at / on the --http
// listener, with no build step. The page is a client of package api and
// holds no data of its own: it asks for the operator's token once, keeps
// it in the tab's sessionStorage (never in a URL or a cookie), and sends it
// as a header with every API request.
//
// The files carry the same security headers as the API (api.Guard): a
// strict content security policy (scripts and styles only from this
// origin, no inline code, no framing) and no caching. The script builds
// every element with textContent, never by parsing markup, so nothing the
// server returns — an approval's code, a file name — can become markup.
package web

import (
	"embed"
	"io/fs"
	"net/http"
	"path"

	"github.com/vial-run/vial/api"
)

//go:embed static
var static embed.FS

// files maps each path the page answers to its embedded file and type.
var files = map[string]struct{ name, ctype string }{
	"/":            {"static/index.html", "text/html; charset=utf-8"},
	"/index.html":  {"static/index.html", "text/html; charset=utf-8"},
	"/app.js":      {"static/app.js", "text/javascript; charset=utf-8"},
	"/app.css":     {"static/app.css", "text/css; charset=utf-8"},
	"/favicon.svg": {"static/favicon.svg", "image/svg+xml"},
}

// Handler serves the page. Mount it at "/": any path but the page's own
// files is 404, and only GET and HEAD are answered.
func Handler() http.Handler {
	return api.Guard(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		b, err := fs.ReadFile(static, f.name)
		if err != nil {
			http.Error(w, "missing "+path.Base(f.name), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", f.ctype)
		if r.Method == http.MethodHead {
			return
		}
		w.Write(b)
	}))
}
