package e2e

import (
	"strconv"
	"strings"
	"testing"
)

// metricSet is a parsed Prometheus text exposition: the samples of each
// metric name.
type metricSet map[string][]metricSample

type metricSample struct {
	labels map[string]string
	value  float64
}

// parseMetrics reads the text format's sample lines (name{labels} value),
// enough for the counters and gauges the tests look at.
func parseMetrics(t *testing.T, text string) metricSet {
	t.Helper()
	m := metricSet{}
	for _, line := range strings.Split(text, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			t.Fatalf("metrics: bad line %q", line)
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			t.Fatalf("metrics: bad value in %q", line)
		}
		series := line[:sp]
		name, rest, hasLabels := strings.Cut(series, "{")
		labels := map[string]string{}
		if hasLabels {
			rest = strings.TrimSuffix(rest, "}")
			for rest != "" {
				k, after, ok := strings.Cut(rest, `="`)
				if !ok {
					t.Fatalf("metrics: bad labels in %q", line)
				}
				var val strings.Builder
				i := 0
				for ; i < len(after) && after[i] != '"'; i++ {
					if after[i] == '\\' && i+1 < len(after) {
						i++
						if after[i] == 'n' {
							val.WriteByte('\n')
							continue
						}
					}
					val.WriteByte(after[i])
				}
				labels[k] = val.String()
				rest = strings.TrimPrefix(after[min(i+1, len(after)):], ",")
			}
		}
		m[name] = append(m[name], metricSample{labels, v})
	}
	return m
}

// get is the value of the series of name whose labels include the given
// name/value pairs, summed over every such series (0 if none).
func (m metricSet) get(name string, labelPairs ...string) float64 {
	sum := 0.0
	for _, s := range m[name] {
		match := true
		for i := 0; i+1 < len(labelPairs); i += 2 {
			if s.labels[labelPairs[i]] != labelPairs[i+1] {
				match = false
				break
			}
		}
		if match {
			sum += s.value
		}
	}
	return sum
}

// labelValues are the values label takes across name's series.
func (m metricSet) labelValues(name, label string) []string {
	var out []string
	for _, s := range m[name] {
		out = append(out, s.labels[label])
	}
	return out
}
