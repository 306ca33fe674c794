package bootmenu

import (
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzResolve feeds arbitrary names to the resolver over a tree with
// symlinks pointing out of it. Whatever the name, the resolver must not
// panic, must never hand out a file outside tftp.root and ipxe_dir, and
// must refuse every name with a ".." segment, a NUL, a backslash or a
// leading slash.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{
		"undionly.kpxe", "hello.txt", "sub/deep.txt", "../secret.txt", "/etc/passwd",
		"9ffefde1/start4.elf", "9ffefde1/cmdline.txt", "9ffefde1/../../secret.txt",
		"boot/52-54-00-00-00-01.ipxe", "boot/02:00:00:ab:cd:ef.ipxe", "out/secret.txt",
		"a\x00b", `..\secret.txt`, "./././hello.txt", "sub/../../secret.txt", "%2e%2e/x",
	} {
		f.Add(s)
	}
	tt := newTestTree(f)
	if err := os.Symlink("..", filepath.Join(tt.root, "out")); err != nil {
		f.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(tt.dir, "secret.txt"), filepath.Join(tt.root, "9ffefde1", "abs")); err != nil {
		f.Fatal(err)
	}
	r := tt.resolver(f)
	client := Client{IP: netip.MustParseAddr("198.18.0.21")}
	f.Fuzz(func(t *testing.T, name string) {
		file, err := r.Resolve(client, name)
		mustRefuse := strings.ContainsAny(name, "\x00\\") || strings.HasPrefix(name, "/")
		for seg := range strings.SplitSeq(name, "/") {
			mustRefuse = mustRefuse || seg == ".."
		}
		if err != nil {
			return
		}
		defer file.Close()
		if mustRefuse {
			t.Fatalf("Resolve(%q) succeeded (%s)", name, file.Path)
		}
		b, err := io.ReadAll(io.LimitReader(file, 1<<20))
		if err != nil {
			t.Fatalf("read %q: %v", name, err)
		}
		if string(b) == "outside the root" {
			t.Fatalf("Resolve(%q) escaped: %s", name, file.Path)
		}
		if file.Path != "" && !strings.HasPrefix(file.Path, tt.root+"/") && !strings.HasPrefix(file.Path, tt.ipxe+"/") {
			t.Fatalf("Resolve(%q) = %s, outside both directories", name, file.Path)
		}
	})
}
