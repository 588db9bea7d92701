package mcp

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"unicode/utf8"

	mcpgo "github.com/mark3labs/mcp-go/mcp"

	"github.com/vial-run/vial/internal/human"
)

// Every result is bounded by the response budget as the client receives
// it: JSON-encoded, where one byte of program output can become six
// ("<" is sent as \u003c, a NUL as \u0000). Without the bound, one call
// could grow vial's memory by hundreds of MiB and disconnect a client
// (the official TypeScript SDK drops the connection above 10 MiB).

// jsonCost is the number of bytes s takes inside a JSON string as
// encoding/json writes it (HTML characters escaped, as mcp-go sends).
func jsonCost(s string) int {
	n := 0
	for _, r := range s {
		n += runeCost(r)
	}
	return n
}

func runeCost(r rune) int {
	switch {
	case r == '"' || r == '\\' || r == '\n' || r == '\r' || r == '\t' || r == '\b' || r == '\f':
		return 2
	case r < 0x20 || r == '<' || r == '>' || r == '&' || r == '\u2028' || r == '\u2029' || r == utf8.RuneError:
		return 6
	}
	return utf8.RuneLen(r)
}

// cutToCost returns the longest prefix of s (on a rune boundary) whose
// JSON cost is at most budget.
func cutToCost(s string, budget int) string {
	n := 0
	for i, r := range s {
		n += runeCost(r)
		if n > budget {
			return s[:i]
		}
	}
	return s
}

// fitTexts cuts the texts so that their JSON costs add up to at most
// budget, sharing it fairly: texts that fit in an equal share keep all
// of it, and the rest divide what remains. It returns the indices it cut.
func fitTexts(texts []*string, budget int) []int {
	costs := make([]int, len(texts))
	total := 0
	for i, t := range texts {
		costs[i] = jsonCost(*t)
		total += costs[i]
	}
	if total <= budget {
		return nil
	}
	order := make([]int, len(texts))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return costs[a] - costs[b] })
	remaining := max(budget, 0)
	var cut []int
	for k, i := range order {
		share := remaining / (len(order) - k)
		if costs[i] <= share {
			remaining -= costs[i]
			continue
		}
		*texts[i] = cutToCost(*texts[i], share)
		remaining -= jsonCost(*texts[i])
		cut = append(cut, i)
	}
	slices.Sort(cut)
	return cut
}

// withinBudget is the last line of defence: a result that still encodes
// larger than the budget (a listing of very long, escape-heavy names, say)
// is withheld and replaced by an error the model can act on.
func (s *Server) withinBudget(c *call, res *mcpgo.CallToolResult) *mcpgo.CallToolResult {
	if res == nil {
		return res
	}
	b, err := json.Marshal(res)
	if err != nil {
		c.outcome = "internal_error"
		s.log.Error("encoding a tool result", "error", err)
		return toolFailure("internal error in vial: the result could not be encoded")
	}
	if len(b) <= s.budget+s.budget/8 {
		return res
	}
	c.outcome = "tool_error"
	c.note(slog.Int("result_bytes", len(b)))
	return toolFailure(fmt.Sprintf("the result (%s encoded) is larger than the %s response limit and was withheld; narrow the request (a smaller directory, a more specific pattern, a page of the file)",
		human.Bytes(uint64(len(b))), human.Bytes(uint64(s.budget))))
}
