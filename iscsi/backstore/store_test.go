package backstore

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestOpenCreatesSparseAndKeepsExisting(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lun.img")
	s, err := Open(path, 1<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	if s.Size() != 1<<20 {
		t.Fatalf("size %d, want %d", s.Size(), 1<<20)
	}
	data := bytes.Repeat([]byte{0xa5}, 4096)
	if _, err := s.WriteAt(data, 8192); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening with another size neither truncates nor grows it.
	s, err = Open(path, 4<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Size() != 1<<20 {
		t.Fatalf("reopened size %d, want %d", s.Size(), 1<<20)
	}
	got := make([]byte, 4096)
	if _, err := s.ReadAt(got, 8192); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("data lost on reopen: err %v", err)
	}
	if err := s.(Prefetcher).Prefetch(0, 1<<20); err != nil {
		t.Fatal(err)
	}
	m := s.(Mapper)
	mapped, n, err := m.Allocated(0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if mapped || n != 8192 {
		t.Fatalf("Allocated(0) = %v,%d; want hole of 8192", mapped, n)
	}
	mapped, n, err = m.Allocated(8192, 1<<20-8192)
	if err != nil || !mapped || n != 4096 {
		t.Fatalf("Allocated(8192) = %v,%d,%v; want data of 4096", mapped, n, err)
	}
}

func TestUnmapPunchesHole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "lun.img")
	s, err := Open(path, 1<<20, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.WriteAt(bytes.Repeat([]byte{1}, 64<<10), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Unmap(4096, 32<<10); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 64<<10)
	if _, err := s.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	for i, b := range got {
		want := byte(1)
		if i >= 4096 && i < 4096+32<<10 {
			want = 0
		}
		if b != want {
			t.Fatalf("byte %d = %d, want %d", i, b, want)
		}
	}
	mapped, n, err := s.(Mapper).Allocated(4096, 1<<20-4096)
	if err != nil || mapped || n != 32<<10 {
		t.Fatalf("after unmap Allocated = %v,%d,%v; want hole of %d", mapped, n, err, 32<<10)
	}
	// An unaligned unmap still reads back as zeros.
	if err := s.Unmap(40000, 1000); err != nil {
		t.Fatal(err)
	}
	part := make([]byte, 1002)
	if _, err := s.ReadAt(part, 39999); err != nil {
		t.Fatal(err)
	}
	if part[0] != 1 || part[1001] != 1 || !bytes.Equal(part[1:1001], make([]byte, 1000)) {
		t.Fatal("unaligned unmap did not zero exactly its range")
	}
	if err := s.Unmap(1<<20-10, 20); err == nil {
		t.Fatal("unmap past the end accepted")
	}
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(filepath.Join(dir, "missing.img"), 0, false); err == nil {
		t.Fatal("missing file without size opened")
	}
	if _, err := Open(filepath.Join(dir, "missing-ro.img"), 1<<20, true); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("read-only open of a missing file: %v, want not-exist", err)
	}
	if _, err := Open(dir, 0, false); err == nil {
		t.Fatal("directory opened as a store")
	}
	path := filepath.Join(dir, "ro.img")
	if err := os.WriteFile(path, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, 0, true)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.WriteAt([]byte{1}, 0); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("write to read-only store: %v", err)
	}
	if err := s.Unmap(0, 512); !errors.Is(err, os.ErrPermission) {
		t.Fatalf("unmap on read-only store: %v", err)
	}
}

// TestBlockDevice runs against a loop device when root can make one.
func TestBlockDevice(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for a loop device")
	}
	if _, err := os.Stat("/dev/loop-control"); err != nil {
		t.Skip("loop devices not available")
	}
	img := filepath.Join(t.TempDir(), "dev.img")
	if err := os.WriteFile(img, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 4<<20); err != nil {
		t.Fatal(err)
	}
	dev, err := attachLoop(t, img)
	if err != nil {
		t.Skipf("losetup: %v", err)
	}
	s, err := Open(dev, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Size() != 4<<20 {
		t.Fatalf("device size %d, want %d", s.Size(), 4<<20)
	}
	if _, err := s.WriteAt(bytes.Repeat([]byte{7}, 8192), 0); err != nil {
		t.Fatal(err)
	}
	if err := s.Unmap(0, 4096); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, 8192)
	if _, err := s.ReadAt(got, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[:4096], make([]byte, 4096)) || got[4096] != 7 {
		t.Fatal("device unmap did not zero its range only")
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
}
