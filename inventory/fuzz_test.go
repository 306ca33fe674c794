package inventory

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse feeds arbitrary files to the loader: it must never panic or hang,
// an accepted inventory must have passed the checks its consumers rely on, and
// every refusal must carry a message.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("../examples/*.toml")
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte(base))
	f.Add([]byte("a = [ { b = 1, c = [ 1, 2 ] }, \"x\\\"y\" ]\n[[t.u]]\n'q.r' = '''m\nl'''\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		inv, ps := Parse("fuzz.toml", data)
		for _, p := range ps {
			if p.Message == "" {
				t.Fatalf("problem without a message: %+v", p)
			}
		}
		if inv == nil {
			if len(ps.Errors()) == 0 {
				t.Fatal("refused without an error")
			}
			return
		}
		macs := map[string]bool{}
		for _, h := range inv.Hosts {
			if h.MAC.HardwareAddr == nil || macs[h.MAC.String()] {
				t.Fatalf("accepted host %q with missing or duplicate MAC", h.Name)
			}
			macs[h.MAC.String()] = true
			if h.Root != nil && h.Root.Image != "" && !strings.HasPrefix(h.Root.Image, "/") {
				t.Fatalf("root image %q not absolute", h.Root.Image)
			}
			_ = inv.RootPath(&h)
		}
	})
}

// FuzzLocate checks that the position scanner terminates and stays inside the
// document on any input, including input the TOML parser would refuse.
func FuzzLocate(f *testing.F) {
	f.Add(base)
	f.Add("x = \"\"\"\n")
	f.Add("[[a.b]]\n[a]\n[[a.b]]\nc = { d = [ {e = 1} ] }")
	f.Fuzz(func(t *testing.T, src string) {
		lines := strings.Count(src, "\n") + 1
		for path, p := range locate(src) {
			if p.Line < 1 || p.Line > lines || p.Col < 1 {
				t.Fatalf("%s at %d:%d outside a %d-line document", path, p.Line, p.Col, lines)
			}
		}
	})
}
