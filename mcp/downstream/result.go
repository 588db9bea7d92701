package downstream

import (
	"encoding/json"
	"fmt"
	"unicode/utf8"

	mcpgo "github.com/mark3labs/mcp-go/mcp"
	"github.com/vial-run/vial/internal/human"
)

// noticeRoom is kept free in the budget for the notice of a cut.
const noticeRoom = 512

// itemOverhead is counted per content item on top of its encoding, so that
// a million empty items cost something.
const itemOverhead = 32

// finishResult makes a downstream result fit to pass on: it drops what
// vial does not forward (the result's _meta and the fields of the
// 2026-07-28 multi round-trip flow, which vial does not drive downstream),
// replaces the server's secrets wherever they appear, and bounds the size
// of content plus structuredContent to budget bytes. A result over budget
// keeps its content items in order while they fit, the first text item
// that does not fit cut to the room left, and structuredContent only if it
// still fits; a notice says what was cut. If structuredContent had to go
// from a tool that declared an outputSchema, the result becomes an error:
// MCP lets a client reject a successful result without the structured
// content its schema promises, but not an error.
func finishResult(res *mcpgo.CallToolResult, server, tool string, hasOutputSchema bool, budget int, red *redactor) (*mcpgo.CallToolResult, error) {
	out := &mcpgo.CallToolResult{
		Content:              res.Content,
		StructuredContent:    res.StructuredContent,
		RawStructuredContent: res.RawStructuredContent,
		IsError:              res.IsError,
	}
	if red.active() {
		b, err := json.Marshal(out)
		if err != nil {
			return nil, fmt.Errorf("encoding the result: %w", err)
		}
		if red.contains(b) {
			clean, err := red.json(b)
			if err != nil {
				return nil, fmt.Errorf("redacting the result: %w", err)
			}
			out = &mcpgo.CallToolResult{}
			if err := json.Unmarshal(clean, out); err != nil {
				return nil, fmt.Errorf("redacting the result: %w", err)
			}
		}
	}
	if out.Content == nil {
		out.Content = []mcpgo.Content{}
	}

	sizes := make([]int, len(out.Content))
	total := 0
	for i, c := range out.Content {
		b, err := json.Marshal(c)
		if err != nil {
			return nil, fmt.Errorf("encoding the result: %w", err)
		}
		sizes[i] = len(b) + itemOverhead
		total += sizes[i]
	}
	structured := structuredSize(out)
	total += structured
	if total <= budget {
		return out, nil
	}

	room := budget - noticeRoom
	kept := make([]mcpgo.Content, 0, len(out.Content)+1)
	dropped, cut := 0, false
	for i, c := range out.Content {
		if sizes[i] <= room {
			kept = append(kept, c)
			room -= sizes[i]
			continue
		}
		if t, ok := c.(mcpgo.TextContent); ok && !cut && room > itemOverhead+64 {
			t.Text = cutUTF8(t.Text, room-itemOverhead-64)
			t.Meta = nil
			kept = append(kept, t)
			room = 0
			cut = true
			continue
		}
		dropped++
	}
	droppedStructured := false
	if structured > 0 {
		if structured <= room {
			room -= structured
		} else {
			out.StructuredContent, out.RawStructuredContent = nil, nil
			droppedStructured = true
		}
	}
	notice := fmt.Sprintf("[vial: the result of %s was cut to fit vial's response budget of %s: the MCP server %q returned %s", tool, human.Bytes(uint64(budget)), server, human.Bytes(uint64(total)))
	if cut {
		notice += "; a text item was shortened"
	}
	if dropped > 0 {
		notice += fmt.Sprintf("; %d content item(s) were left out", dropped)
	}
	if droppedStructured {
		notice += "; structuredContent was left out"
		if hasOutputSchema {
			notice += ", so the call is reported as failed"
			out.IsError = true
		}
	}
	notice += ". Ask for less, e.g. a smaller range or a narrower query.]"
	out.Content = append(kept, mcpgo.NewTextContent(notice))
	return out, nil
}

func structuredSize(r *mcpgo.CallToolResult) int {
	if len(r.RawStructuredContent) > 0 {
		return len(r.RawStructuredContent)
	}
	if r.StructuredContent == nil {
		return 0
	}
	b, err := json.Marshal(r.StructuredContent)
	if err != nil {
		return 0
	}
	return len(b)
}

// cutUTF8 returns the longest prefix of s of at most n bytes whose JSON
// encoding is at most about n bytes, ending on a rune boundary.
func cutUTF8(s string, n int) string {
	if n <= 0 {
		return ""
	}
	// A JSON-escaped character takes at most six bytes; count the prefix's
	// encoded length as we go.
	enc, i := 0, 0
	for i < len(s) {
		r, w := utf8.DecodeRuneInString(s[i:])
		cost := w
		if r < 0x20 || r == '"' || r == '\\' || r == '<' || r == '>' || r == '&' || r == utf8.RuneError {
			cost = 6
		}
		if enc+cost > n {
			break
		}
		enc += cost
		i += w
	}
	return s[:i]
}
