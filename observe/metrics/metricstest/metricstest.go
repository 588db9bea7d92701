// Package metricstest reads Prometheus text exposition into flat maps for
// tests: every counter and gauge as "name{label="value",...}" → value, and
// every histogram as its _count and _sum series. Go runtime and process
// series (go_*, process_*) and histogram buckets are left out, since they
// vary from run to run.
package metricstest

import (
	"fmt"
	"io"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// Parse reads text exposition format.
func Parse(r io.Reader) (map[string]float64, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parsing metrics: %w", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		if strings.HasPrefix(name, "go_") || strings.HasPrefix(name, "process_") {
			continue
		}
		for _, m := range f.GetMetric() {
			l := Labels(m)
			switch {
			case m.Counter != nil:
				out[name+l] = m.Counter.GetValue()
			case m.Gauge != nil:
				out[name+l] = m.Gauge.GetValue()
			case m.Untyped != nil:
				out[name+l] = m.Untyped.GetValue()
			case m.Histogram != nil:
				out[name+"_count"+l] = float64(m.Histogram.GetSampleCount())
				out[name+"_sum"+l] = m.Histogram.GetSampleSum()
			}
		}
	}
	return out, nil
}

// Labels formats a metric's labels as {a="x",b="y"} sorted by name, or ""
// when it has none.
func Labels(m *dto.Metric) string {
	var parts []string
	for _, lp := range m.GetLabel() {
		parts = append(parts, fmt.Sprintf("%s=%q", lp.GetName(), lp.GetValue()))
	}
	if len(parts) == 0 {
		return ""
	}
	slices.Sort(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// Without returns m without the series whose name (before any "{") ends
// with one of the suffixes, e.g. "_sum" to compare only counts.
func Without(m map[string]float64, suffixes ...string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		name, _, _ := strings.Cut(k, "{")
		if slices.ContainsFunc(suffixes, func(s string) bool { return strings.HasSuffix(name, s) }) {
			continue
		}
		out[k] = v
	}
	return out
}
