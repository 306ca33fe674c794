package netsantest

import (
	"io"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestDisk: the image has its size, what fill wrote, the boot signature
// at 510, and holes elsewhere.
func TestDisk(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "disk.img")
	Disk(t, path, 4<<20, func(w io.WriterAt) error {
		_, err := w.WriteAt([]byte("data"), 1<<20)
		return err
	})
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != 4<<20 || b[510] != 0x55 || b[511] != 0xaa || string(b[1<<20:1<<20+4]) != "data" {
		t.Fatalf("%d bytes, signature % x, data %q", len(b), b[510:512], b[1<<20:1<<20+4])
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if used := st.Sys().(*syscall.Stat_t).Blocks * 512; used > 1<<20 {
		t.Errorf("%d bytes allocated: not sparse", used)
	}
}
