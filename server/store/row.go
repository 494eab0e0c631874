package store

import (
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"time"
)

// Row reads typed values from one Result row by column name, tolerating the
// value types different engines return (Go integers of any width, floats,
// json.Number, strings, []byte, times). The first value that cannot be read
// is kept in Err; later reads return zero values.
type Row struct {
	Vals []any
	Idx  map[string]int // column name → index in Vals
	Err  error
}

// ColumnIndex maps a Result's column names to their positions.
func ColumnIndex(res *Result) map[string]int {
	idx := make(map[string]int, len(res.Columns))
	for i, c := range res.Columns {
		idx[c] = i
	}
	return idx
}

func (r *Row) fail(col string, v any) {
	if r.Err == nil {
		r.Err = fmt.Errorf("column %s: unexpected value %v (%T)", col, v, v)
	}
}

func (r *Row) val(col string) any {
	i, ok := r.Idx[col]
	if !ok || i >= len(r.Vals) {
		if r.Err == nil {
			r.Err = fmt.Errorf("column %s: not in the result", col)
		}
		return nil
	}
	return r.Vals[i]
}

// Str reads a string column ("" for NULL).
func (r *Row) Str(col string) string {
	switch x := r.val(col).(type) {
	case nil:
		return ""
	case string:
		return x
	case []byte:
		return string(x)
	case fmt.Stringer:
		return x.String()
	default:
		return fmt.Sprint(x)
	}
}

// U64 reads a non-negative integer column (0 for NULL).
func (r *Row) U64(col string) uint64 {
	v := r.val(col)
	n, ok := ToUint64(v)
	if !ok {
		r.fail(col, v)
	}
	return n
}

// OptI64 reads a nullable integer column.
func (r *Row) OptI64(col string) *int64 {
	v := r.val(col)
	if v == nil {
		return nil
	}
	var n int64
	switch x := v.(type) {
	case int8:
		n = int64(x)
	case int16:
		n = int64(x)
	case int32:
		n = int64(x)
	case int64:
		n = x
	case int:
		n = int64(x)
	case float64:
		n = int64(x)
	case json.Number:
		i, err := x.Int64()
		if err != nil {
			r.fail(col, v)
		}
		n = i
	case string:
		i, err := strconv.ParseInt(x, 10, 64)
		if err != nil {
			r.fail(col, v)
		}
		n = i
	default:
		u, ok := ToUint64(v)
		if !ok || u > math.MaxInt64 {
			r.fail(col, v)
		}
		n = int64(u)
	}
	return &n
}

// Time reads a timestamp column (zero for NULL).
func (r *Row) Time(col string) time.Time {
	v := r.val(col)
	t, err := ToTime(v)
	if err != nil {
		r.fail(col, v)
	}
	return t
}

// ToUint64 converts an engine's integer value to uint64 (NULL is 0); false
// for negative, fractional or non-numeric values.
func ToUint64(v any) (uint64, bool) {
	switch x := v.(type) {
	case nil:
		return 0, true
	case uint8:
		return uint64(x), true
	case uint16:
		return uint64(x), true
	case uint32:
		return uint64(x), true
	case uint64:
		return x, true
	case uint:
		return uint64(x), true
	case int8:
		return uint64(x), x >= 0
	case int16:
		return uint64(x), x >= 0
	case int32:
		return uint64(x), x >= 0
	case int64:
		return uint64(x), x >= 0
	case int:
		return uint64(x), x >= 0
	case float64:
		return uint64(x), x >= 0 && x < math.MaxUint64 && x == math.Trunc(x)
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	case json.Number:
		n, err := strconv.ParseUint(string(x), 10, 64)
		return n, err == nil
	case string:
		n, err := strconv.ParseUint(x, 10, 64)
		return n, err == nil
	}
	return 0, false
}

var timeLayouts = []string{time.RFC3339Nano, "2006-01-02 15:04:05.999999999", "2006-01-02 15:04:05.999999999Z07:00", "2006-01-02T15:04:05.999999999"}

// ToTime converts an engine's timestamp value (time.Time or text) to UTC;
// NULL is the zero time.
func ToTime(v any) (time.Time, error) {
	switch x := v.(type) {
	case nil:
		return time.Time{}, nil
	case time.Time:
		return x.UTC(), nil
	case string:
		for _, l := range timeLayouts {
			if t, err := time.Parse(l, x); err == nil {
				return t.UTC(), nil
			}
		}
	}
	return time.Time{}, fmt.Errorf("not a timestamp: %v (%T)", v, v)
}
