package config

import "slices"

// The merge rules. They are the single source of truth that
// docs/configuration.md describes; each has a table test in merge_test.go.
//
//  1. Tables merge key by key, at every depth: a key a higher layer does not
//     mention keeps its lower value.
//  2. A scalar from a higher layer wins, including false, 0 and "".
//  3. An array from a higher layer replaces the lower array whole (so an
//     agent's allowed_hosts is exactly the agent's list).
//  4. Exception: tools.enabled accumulates. Each layer's list is added to
//     the tools enabled so far, and each layer's tools.disabled removes
//     tools; a tool disabled lower and enabled higher is enabled. If no
//     layer sets tools.enabled, the tools whose definition says
//     enabled_by_default start enabled.
//  5. [metadata] and extends describe a file, not the result: they are not
//     merged.
//  6. A value of a different kind replaces the lower one (schema checks
//     make this rare: it only happens in free-form tool config).

// notMerged are the top-level keys rule 5 keeps out of the merge.
var notMerged = map[string]bool{"metadata": true, "extends": true}

// mergeLayer merges the layer over acc in place. The layer's nodes are
// copied, so the layer can be merged again elsewhere.
func mergeLayer(acc, layer *node) {
	canonicalizeToolConfig(layer)
	for _, k := range layer.sortedKeys() {
		if notMerged[k] {
			continue
		}
		mergeKey(acc, k, layer.tbl[k], k)
	}
	applyToolSwitches(acc, layer)
}

// mergeInto merges src over dst, both tables (rules 1, 2, 3, 6).
func mergeInto(dst, src *node, path string) {
	for _, k := range src.sortedKeys() {
		mergeKey(dst, k, src.tbl[k], path+"."+k)
	}
}

func mergeKey(dst *node, k string, sv *node, path string) {
	dv, ok := dst.tbl[k]
	switch {
	case path == "tools.enabled" || path == "tools.disabled":
		// Rule 4: applyToolSwitches handles these, seeing the whole layer.
	case ok && dv.kind == kTable && sv.kind == kTable:
		mergeInto(dv, sv, path)
	default:
		dst.tbl[k] = sv.clone()
	}
}

// applyToolSwitches applies rule 4 for one layer: enabled ∪ layer.enabled,
// minus layer.disabled. tools.disabled keeps every tool switched off and
// not switched on again, so that show prints a consistent pair.
func applyToolSwitches(acc, layer *node) {
	lt, at := layer.get("tools"), acc.get("tools")
	if lt == nil || lt.kind != kTable || at == nil || at.kind != kTable {
		return
	}
	switchTools(at, lt.tbl["enabled"], "enabled", "disabled")
	switchTools(at, lt.tbl["disabled"], "disabled", "enabled")
}

// switchTools adds the tools of a layer's list (its tools.enabled or
// tools.disabled, given as key) to the accumulated list of the same key in
// at, and takes them out of the opposite list.
func switchTools(at, list *node, key, opposite string) {
	if list == nil || list.kind != kArray {
		return
	}
	acc := at.tbl[key]
	if acc == nil || acc.kind != kArray {
		acc = &node{kind: kArray}
		at.tbl[key] = acc
	}
	acc.key, acc.val, acc.src = list.key, list.val, list.src
	for _, e := range list.arr {
		if e.kind == kString {
			acc.arr = appendTool(acc.arr, e)
			if o := at.tbl[opposite]; o != nil {
				o.arr = removeTool(o.arr, e.s)
			}
		}
	}
}

// appendTool adds e unless a tool of the same canonical name is there.
func appendTool(list []*node, e *node) []*node {
	name := CanonicalTool(e.s)
	if slices.ContainsFunc(list, func(n *node) bool { return CanonicalTool(n.s) == name }) {
		return list
	}
	return append(list, e.clone())
}

func removeTool(list []*node, name string) []*node {
	name = CanonicalTool(name)
	return slices.DeleteFunc(list, func(n *node) bool { return CanonicalTool(n.s) == name })
}

// canonicalizeToolConfig renames [tools.config.X] tables written under
// another name of a tool (run_python) to its canonical name (run_code), so
// that layers using different names merge. Where a layer has both, the
// canonical table wins key by key. It changes the layer in place and is
// idempotent.
func canonicalizeToolConfig(layer *node) {
	cfg := layer.get("tools", "config")
	if cfg == nil || cfg.kind != kTable {
		return
	}
	for _, k := range cfg.sortedKeys() {
		c := CanonicalTool(k)
		if c == k {
			continue
		}
		alias := cfg.tbl[k]
		delete(cfg.tbl, k)
		if own, ok := cfg.tbl[c]; ok && own.kind == kTable && alias.kind == kTable {
			mergeInto(alias, own, "tools.config."+c)
		}
		cfg.tbl[c] = alias
	}
}
