package runtime

import (
	"context"
	"errors"
	"testing"
)

// peakTransport is a host transport that reports its memory high-water
// mark through PeakMemory (as Sandbox does) and a different one through
// Usage, so a test can tell which one a context read.
type peakTransport struct {
	*hostTransport
	peak    uint64
	peakErr error
}

func (p *peakTransport) PeakMemory() (uint64, error) { return p.peak, p.peakErr }

func (p *peakTransport) Usage() (Usage, error) { return Usage{PeakMemory: 1}, nil }

func TestContextPeakMemory(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		t    *peakTransport
		want uint64
	}{
		{"read alone", &peakTransport{peak: 12345}, 12345},
		{"falls back to Usage", &peakTransport{peakErr: errors.New("no memory.peak")}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.t.hostTransport = startHost(t, hostArgv(t, Python))
			c, err := NewContext(context.Background(), tc.t, ContextOptions{Language: Python})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { _ = c.Close() })
			res, err := c.Exec(t.Context(), ExecRequest{Code: "1+1"})
			if err != nil {
				t.Fatal(err)
			}
			if res.PeakMemory != tc.want {
				t.Errorf("PeakMemory = %d, want %d", res.PeakMemory, tc.want)
			}
		})
	}
}
