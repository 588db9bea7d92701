package policy

import (
	"path"
	"strings"
)

// workspaceDir is where every sandbox sees its workspace; patterns and
// paths written under it are made workspace-relative.
const workspaceDir = "/workspace"

// workspaceRel cleans p and makes it workspace-relative: "./a/../.env" is
// ".env", "/workspace/x" is "x", "" and "/workspace" are ".". inside is
// false for an absolute path elsewhere (returned cleaned) and for one that
// climbs out with "..".
func workspaceRel(p string) (rel string, inside bool) {
	if strings.HasPrefix(p, "/") {
		c := path.Clean(p)
		switch {
		case c == workspaceDir:
			return ".", true
		case strings.HasPrefix(c, workspaceDir+"/"):
			return c[len(workspaceDir)+1:], true
		}
		return c, false
	}
	c := path.Clean(p)
	if c == ".." || strings.HasPrefix(c, "../") {
		return c, false
	}
	return c, true
}

// MatchPath reports whether the blocked_paths pattern matches the path p,
// or a directory p is under (a blocked directory blocks everything in it).
//
// p is a workspace-relative path (an absolute one under /workspace is made
// relative) and is cleaned first, so "a/../.env" and "./.env" are ".env".
// In the pattern, "**" as a whole segment matches any number of
// directories, zero included ("**/.env" matches ".env" and "a/b/.env");
// "*", "?" and "[...]" match within one segment as in path.Match, and "*"
// matches names that start with a dot.
//
// Where a pattern applies:
//   - one without a slash (".env", "*.pem") matches the name at any depth,
//     as in .gitignore: a name an operator blocks is meant wherever it is;
//   - one with a slash ("secrets/*", "./config.json") is anchored at the
//     workspace root; "/workspace/..." is the same as the relative form;
//   - one naming a host path outside /workspace ("/etc/shadow", as in
//     seed 001) matches only that absolute path. The file tools cannot
//     reach such paths at all — the workspace root is their boundary — so
//     these patterns never match a workspace file.
//
// A malformed pattern (an unclosed "[") matches every path: a blocked list
// must fail closed when a typo would otherwise switch it off. Rules.Validate
// reports it.
//
// Matching is on names, not files: a symbolic link named "x" pointing at
// ".env" is not ".env". The enforcer must check the path it finally opens
// (or refuse to follow links), and a hard link made by code in the sandbox
// cannot be told from the file by name at all. blocked_paths restrict the
// file tools; code running in the sandbox sees its whole workspace.
func MatchPath(pattern, p string) bool {
	pat, abs, ok := compilePathPattern(pattern)
	if !ok {
		return true
	}
	rel, inside := workspaceRel(p)
	var segs []string
	switch {
	case abs && !inside && strings.HasPrefix(rel, "/"):
		segs = splitSegs(rel[1:])
	case !abs && inside:
		segs = splitSegs(rel)
	default:
		return false
	}
	return matchSegs(pat, segs)
}

// BlockedPath returns the first of patterns that matches p (see MatchPath).
func BlockedPath(patterns []string, p string) (pattern string, blocked bool) {
	for _, pat := range patterns {
		if strings.TrimSpace(pat) == "" {
			continue
		}
		if MatchPath(pat, p) {
			return pat, true
		}
	}
	return "", false
}

// compilePathPattern splits a pattern into segments. abs is true for a host
// path outside /workspace. ok is false for a malformed pattern.
func compilePathPattern(pattern string) (segs []string, abs, ok bool) {
	p := strings.TrimSpace(pattern)
	if p == "" {
		return nil, false, false
	}
	anchored := strings.Contains(strings.TrimRight(p, "/"), "/")
	if strings.HasPrefix(p, "/") {
		c := path.Clean(p)
		switch {
		case c == workspaceDir:
			p = ""
		case strings.HasPrefix(c, workspaceDir+"/"):
			p = c[len(workspaceDir)+1:]
		default:
			abs = true
			p = strings.TrimPrefix(c, "/")
		}
	} else {
		p = path.Clean(p)
		if p == "." {
			p = ""
		}
		if p == ".." || strings.HasPrefix(p, "../") {
			// A pattern above the workspace names nothing the file tools
			// can reach; treat it as a host path that never matches.
			return []string{"\x00"}, true, true
		}
	}
	segs = splitSegs(p)
	if !anchored && !abs && len(segs) > 0 {
		segs = append([]string{"**"}, segs...)
	}
	for _, s := range segs {
		if _, err := path.Match(s, ""); err != nil {
			return nil, abs, false
		}
	}
	return segs, abs, true
}

func splitSegs(p string) []string {
	if p == "" || p == "." {
		return nil
	}
	return strings.Split(p, "/")
}

// matchSegs matches pattern segments against path segments, with "**" as
// any number of segments. It succeeds when the pattern is used up, with
// path segments left or not: what is under a matched directory is matched
// too. The set of reachable positions keeps it O(len(pat) × len(segs)).
func matchSegs(pat, segs []string) bool {
	cur := make([]bool, len(segs)+1)
	cur[0] = true
	for _, ps := range pat {
		next := make([]bool, len(segs)+1)
		any := false
		if ps == "**" {
			on := false
			for j := range cur {
				on = on || cur[j]
				next[j] = on
				any = any || on
			}
		} else {
			for j := 0; j < len(segs); j++ {
				if cur[j] {
					if m, _ := path.Match(ps, segs[j]); m {
						next[j+1] = true
						any = true
					}
				}
			}
		}
		if !any {
			return false
		}
		cur = next
	}
	return true
}

// shownPath is how a path appears in a reason.
func shownPath(rel string) string {
	if rel == "." {
		return workspaceDir
	}
	return shown(rel, 200)
}
