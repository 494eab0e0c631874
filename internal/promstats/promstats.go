// Package promstats exposes a component's Stats struct (plain integer
// counters, read under the component's own lock) as Prometheus metrics at
// scrape time, so hot paths keep cheap integer increments instead of
// Prometheus calls.
package promstats

import (
	"reflect"
	"strings"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector reads a Stats struct on every scrape.
type Collector struct {
	prefix string
	read   func() any
}

// New returns a collector naming each exported integer field of the struct
// that read returns as prefix_<snake_case field>. Fields are counters
// (suffixed _total) unless tagged `prom:"gauge"` or named like a current
// level (…Tracked, …Current, …Active, …Pending, …Entries, …Size, …Bytes in use).
// Nested structs are flattened with their field name as an infix.
func New(prefix string, read func() any) *Collector {
	return &Collector{prefix: prefix, read: read}
}

// Describe sends nothing: the metric set is derived from the struct at
// scrape time (an "unchecked" collector).
func (c *Collector) Describe(chan<- *prometheus.Desc) {}

// Collect reads the stats and sends one metric per integer field.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	walk(c.prefix, reflect.ValueOf(c.read()), "", ch)
}

func walk(prefix string, v reflect.Value, tag string, ch chan<- prometheus.Metric) {
	for v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface {
		if v.IsNil() {
			return
		}
		v = v.Elem()
	}
	switch v.Kind() {
	case reflect.Struct:
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name := prefix + "_" + snake(f.Name)
			if f.Anonymous {
				name = prefix // embedded structs' fields are the outer struct's
			}
			walk(name, v.Field(i), f.Tag.Get("prom"), ch)
		}
	case reflect.Map:
		// map[string]<int>: one series per key, label "reason".
		if v.Type().Key().Kind() != reflect.String {
			return
		}
		iter := v.MapRange()
		for iter.Next() {
			val, ok := number(iter.Value())
			if !ok {
				continue
			}
			name, typ := metricName(prefix, tag)
			desc := prometheus.NewDesc(name, "Sightline internal counter "+name+".", []string{"reason"}, nil)
			ch <- prometheus.MustNewConstMetric(desc, typ, val, iter.Key().String())
		}
	default:
		val, ok := number(v)
		if !ok {
			return
		}
		name, typ := metricName(prefix, tag)
		desc := prometheus.NewDesc(name, "Sightline internal counter "+name+".", nil, nil)
		ch <- prometheus.MustNewConstMetric(desc, typ, val)
	}
}

func number(v reflect.Value) (float64, bool) {
	switch v.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return float64(v.Int()), true
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return float64(v.Uint()), true
	case reflect.Float32, reflect.Float64:
		return v.Float(), true
	}
	return 0, false
}

var gaugeSuffixes = []string{"_tracked", "_current", "_active", "_pending", "_entries", "_size", "_in_use", "_queued", "_len"}

func metricName(name, tag string) (string, prometheus.ValueType) {
	if tag == "gauge" {
		return name, prometheus.GaugeValue
	}
	if tag != "counter" {
		for _, s := range gaugeSuffixes {
			if strings.HasSuffix(name, s) {
				return name, prometheus.GaugeValue
			}
		}
	}
	return name + "_total", prometheus.CounterValue
}

// snake turns CamelCase (with initialisms: "TCPSeq", "RowsByType") into snake_case.
func snake(s string) string {
	var b strings.Builder
	r := []rune(s)
	for i, c := range r {
		if unicode.IsUpper(c) {
			if i > 0 && (unicode.IsLower(r[i-1]) || (i+1 < len(r) && unicode.IsLower(r[i+1]) && unicode.IsUpper(r[i-1]))) {
				b.WriteByte('_')
			}
			b.WriteRune(unicode.ToLower(c))
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}
