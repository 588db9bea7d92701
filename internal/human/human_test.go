package human

import "testing"

func TestPrefixAndTruncBytes(t *testing.T) {
	for _, tc := range []struct {
		s     string
		n     int
		pre   string
		trunc string
	}{
		{"hello", 10, "hello", "hello"},
		{"hello", 5, "hello", "hello"},
		{"hello", 3, "hel", "hel…"},
		{"héllo", 2, "h", "h…"}, // é is two bytes: not split
		{"héllo", 3, "hé", "hé…"},
		{"日本", 4, "日", "日…"},
		{"日本", 0, "", "…"},
		{"abc", -1, "", "…"},
	} {
		if got := Prefix(tc.s, tc.n); got != tc.pre {
			t.Errorf("Prefix(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.pre)
		}
		if got := TruncBytes(tc.s, tc.n); got != tc.trunc {
			t.Errorf("TruncBytes(%q, %d) = %q, want %q", tc.s, tc.n, got, tc.trunc)
		}
	}
}
