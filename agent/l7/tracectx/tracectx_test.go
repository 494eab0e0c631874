package tracectx

import "testing"

func TestTraceparent(t *testing.T) {
	tests := []struct {
		in          string
		trace, span string
		ok          bool
	}{
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true},
		{"00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01", "4BF92F3577B34DA6A3CE929D0E0E4736", "00F067AA0BA902B7", true},
		{"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", true},
		{"00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01", "", "", false},  // short trace id
		{"00-4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7-01", "", "", false}, // bad separator
		{"00-4bf92f3577b34da6a3ce929d0e0e47zz-00f067aa0ba902b7-01", "", "", false}, // not hex
		{"", "", "", false},
	}
	for _, tc := range tests {
		tr, sp, ok := Traceparent(tc.in)
		if tr != tc.trace || sp != tc.span || ok != tc.ok {
			t.Errorf("Traceparent(%q) = %q, %q, %v", tc.in, tr, sp, ok)
		}
		btr, bsp, bok := Traceparent([]byte(tc.in))
		if string(btr) != tc.trace || string(bsp) != tc.span || bok != tc.ok {
			t.Errorf("Traceparent([]byte %q) = %q, %q, %v", tc.in, btr, bsp, bok)
		}
	}
}

func TestIsHex(t *testing.T) {
	for in, want := range map[string]bool{"": false, "0aF9": true, "0g": false, "-1": false} {
		if IsHex(in) != want {
			t.Errorf("IsHex(%q) != %v", in, want)
		}
	}
}
