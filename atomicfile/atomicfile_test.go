package atomicfile

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "leases.json")
	for _, body := range []string{"first", "second, longer than the first", "3"} {
		if err := WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(path)
		if err != nil || string(got) != body {
			t.Fatalf("read %q, %v; want %q", got, err, body)
		}
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, %v", fi.Mode(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".*.tmp*")); len(left) != 0 {
		t.Fatalf("temp files left behind: %v", left)
	}
}

func TestWriteFileFailureKeepsOld(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state")
	if err := WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	// A directory in the way of the rename: the write fails, the old file stays.
	if err := WriteFile(dir, []byte("new"), 0o644); err == nil {
		t.Fatal("rename over a directory succeeded")
	}
	got, _ := os.ReadFile(path)
	if string(got) != "old" {
		t.Fatalf("old content lost: %q", got)
	}
	if left, _ := filepath.Glob(filepath.Join(filepath.Dir(dir), ".*.tmp*")); len(left) != 0 {
		t.Fatalf("temp files left behind: %v", left)
	}
}

// TestReplaceKeepsModeAndOwner: a replaced file keeps its permission bits,
// owner and group (as root: a file owned by another user), not those a
// new file of the process would get.
func TestReplaceKeepsModeAndOwner(t *testing.T) {
	path := filepath.Join(t.TempDir(), "netsan.toml")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	uid, gid := os.Getuid(), os.Getgid()
	if uid == 0 {
		uid, gid = 4242, 4343
		if err := os.Chown(path, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	if err := Replace(path, []byte("new")); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if got, _ := os.ReadFile(path); string(got) != "new" || fi.Mode().Perm() != 0o640 || int(st.Uid) != uid || int(st.Gid) != gid {
		t.Errorf("after Replace: %q, mode %v, owner %d:%d; want \"new\", 0640, %d:%d", got, fi.Mode().Perm(), st.Uid, st.Gid, uid, gid)
	}
	if err := Replace(filepath.Join(filepath.Dir(path), "missing"), []byte("x")); err == nil {
		t.Error("Replace of a missing file succeeded")
	}
}
