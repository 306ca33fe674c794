package netsantest

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

// Disk writes a sparse raw disk image of size bytes at path, making its
// directory: what fill writes into it, then the MBR boot signature that
// netsan's images take for a disk.
func Disk(t testing.TB, path string, size int64, fill func(w io.WriterAt) error) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	if err := fill(f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if _, err := f.WriteAt([]byte{0x55, 0xaa}, 510); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}
