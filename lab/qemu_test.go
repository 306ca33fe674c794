package lab

import "testing"

func TestFindLine(t *testing.T) {
	for _, c := range []struct {
		text, want, line string
		ok               bool
	}{
		{"a\r\nNETSAN-LAB-MARKER host=n1 up=1\r\n", "NETSAN-LAB-MARKER", "NETSAN-LAB-MARKER host=n1 up=1", true},
		{"junk\x1b[2JNETSAN-LAB-MARKER host=n1\n", "NETSAN-LAB-MARKER", "NETSAN-LAB-MARKER host=n1", true},
		// Still being written: not a line yet.
		{"a\nNETSAN-LAB-MARKER h", "NETSAN-LAB-MARKER", "", false},
		{"", "x", "", false},
	} {
		line, ok := findLine(c.text, c.want)
		if line != c.line || ok != c.ok {
			t.Errorf("findLine(%q, %q) = %q, %v; want %q, %v", c.text, c.want, line, ok, c.line, c.ok)
		}
	}
}

func TestFields(t *testing.T) {
	f := Fields(`NETSAN-LAB-DATA phase=verify host=store1 content="written by store1" up=8.88` + "\r")
	want := map[string]string{"phase": "verify", "host": "store1", "content": "written by store1", "up": "8.88"}
	for k, v := range want {
		if f[k] != v {
			t.Errorf("Fields[%s] = %q, want %q", k, f[k], v)
		}
	}
	if len(f) != len(want) {
		t.Errorf("Fields = %v, want %d keys", f, len(want))
	}
}
