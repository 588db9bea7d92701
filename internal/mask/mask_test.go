package mask

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestReplace(t *testing.T) {
	m := New([]string{"abc", "sk-test-123", "sk-test-123-long", "hunter22", "hunter22"})
	for _, tc := range []struct{ name, in, want string }{
		{"none", "plain text", "plain text"},
		{"one", "key=sk-test-123 ok", "key=******** ok"},
		{"longest wins", "sk-test-123-long!", "********!"},
		{"short values are not secrets", "abc abc", "abc abc"},
		{"two", "hunter22/hunter22", "********/********"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := m.Replace(tc.in); got != tc.want {
				t.Errorf("Replace(%q) = %q, want %q", tc.in, got, tc.want)
			}
		})
	}
	var nilm *Masker
	if nilm.Replace("x") != "x" || New([]string{"ab"}) != nil {
		t.Error("a nil or empty masker must mask nothing")
	}
}

// TestCut: a secret that straddles the cut is masked whole, never shown in
// part; cuts fall on character boundaries.
func TestCut(t *testing.T) {
	m := New([]string{"SECRETVALUE"})
	for _, tc := range []struct {
		name    string
		in      string
		n       int
		want    string
		wantCut bool
	}{
		{"short", "ab SECRETVALUE", 100, "ab ********", false},
		{"straddles", "abcdefSECRETVALUE tail", 8, "abcdef********", true},
		{"starts at the cut", "abcdefghSECRETVALUE", 8, "abcdefgh", true},
		{"exact", "abcd", 4, "abcd", false},
		{"mid-rune", "aé" + strings.Repeat("x", 10), 2, "a", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, cut := m.Cut(tc.in, tc.n)
			if got != tc.want || cut != tc.wantCut {
				t.Errorf("Cut(%q, %d) = %q, %v; want %q, %v", tc.in, tc.n, got, cut, tc.want, tc.wantCut)
			}
		})
	}
	var nilm *Masker
	if got, cut := nilm.Cut("aé", 2); got != "a" || !cut || !utf8.ValidString(got) {
		t.Errorf("nil Cut = %q, %v", got, cut)
	}
}

func FuzzCut(f *testing.F) {
	f.Add("xxSECRETxx", 5)
	f.Fuzz(func(t *testing.T, s string, n int) {
		m := New([]string{"SECRET", "SECRET-2"})
		n = n % 64
		// The cut text is a prefix of the whole masked text: it shows
		// nothing of a secret that the whole text does not mask.
		got, cut := m.Cut(s, n)
		full := m.Replace(s)
		if !strings.HasPrefix(full, got) || (!cut && got != full) {
			t.Fatalf("Cut(%q, %d) = %q, %v; the masked text is %q", s, n, got, cut, full)
		}
		if utf8.ValidString(s) && !utf8.ValidString(got) {
			t.Fatalf("Cut(%q, %d) = %q is not valid UTF-8", s, n, got)
		}
	})
}
