package runtime

import (
	"context"
	"slices"
	"testing"
	"time"
)

func TestParseLanguage(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want Language
		ok   bool
	}{{"python", Python, true}, {"js", JavaScript, true}, {"shell", Bash, true}, {"ruby", "", false}} {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseLanguage(tt.in)
			if got != tt.want || (err == nil) != tt.ok {
				t.Errorf("ParseLanguage(%q) = %q, %v", tt.in, got, err)
			}
		})
	}
}

// BenchmarkContextExec measures a warm call's round trip over the
// host-process transport (the driver's overhead, without a sandbox).
func BenchmarkContextExec(b *testing.B) {
	for _, tt := range []struct {
		lang Language
		code string
	}{{Python, "1+1"}, {JavaScript, "1+1"}, {Bash, "true"}} {
		b.Run(string(tt.lang), func(b *testing.B) {
			c := newHostContext(b, tt.lang, ContextOptions{})
			durs := make([]time.Duration, 0, b.N)
			for b.Loop() {
				t0 := time.Now()
				if _, err := c.Exec(context.Background(), ExecRequest{Code: tt.code}); err != nil {
					b.Fatal(err)
				}
				durs = append(durs, time.Since(t0))
			}
			slices.Sort(durs)
			b.ReportMetric(float64(durs[len(durs)/2].Microseconds()), "p50-µs")
			b.ReportMetric(float64(durs[len(durs)*99/100].Microseconds()), "p99-µs")
		})
	}
}
