package images

import (
	"bufio"
	"strings"
	"testing"
)

func TestParseProgress(t *testing.T) {
	for line, want := range map[string]float64{
		"    (0.00/100%)":  0,
		"    (42.50/100%)": 42.5,
		"(100.00/100%)":    100,
		"(120.00/100%)":    -1,
		"(NaN/100%)":       -1,
		"(x/100%)":         -1,
		"42/100%)(":        -1,
		"no progress here": -1,
	} {
		got, ok := parseProgress(line)
		if !ok {
			got = -1
		}
		if got != want {
			t.Errorf("parseProgress(%q) = %v, want %v", line, got, want)
		}
	}
}

// FuzzProgress feeds arbitrary qemu-img output through the splitter and the
// line parser: no panic, no endless scan, percentages within 0–100.
func FuzzProgress(f *testing.F) {
	f.Add("    (0.00/100%)\r    (1.00/100%)\r    (100.00/100%)\r\n")
	f.Add("(50/100%)\n\r\r(")
	f.Add("")
	f.Fuzz(func(t *testing.T, out string) {
		sc := bufio.NewScanner(strings.NewReader(out))
		sc.Split(splitCR)
		n := 0
		for sc.Scan() {
			if n++; n > len(out)+1 {
				t.Fatalf("%d tokens from %d bytes", n, len(out))
			}
			if pct, ok := parseProgress(sc.Text()); ok && (pct < 0 || pct > 100) {
				t.Fatalf("parseProgress(%q) = %v", sc.Text(), pct)
			}
		}
	})
}
