package images

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// xfsMount makes a 1 GiB XFS file system with reflink on a loop device over
// a file in the test's temporary directory, mounts it, and undoes it all in
// Cleanup. It skips when not root or without mkfs.xfs or loop devices.
func xfsMount(t *testing.T) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot make a loop-mounted XFS file system")
	}
	mkfs, err := exec.LookPath("mkfs.xfs")
	if err != nil {
		t.Skip("mkfs.xfs not installed (xfsprogs)")
	}
	dir := t.TempDir()
	backing := filepath.Join(dir, "xfs.img")
	f, err := os.Create(backing)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(gib); err != nil {
		t.Fatal(err)
	}
	f.Close()
	out, err := exec.Command("losetup", "--find", "--show", backing).CombinedOutput()
	if err != nil {
		t.Skipf("no loop device: losetup: %v %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	if out, err := exec.Command(mkfs, "-q", "-m", "reflink=1", dev).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.xfs: %v %s", err, out)
	}
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "xfs", dev, mnt).CombinedOutput(); err != nil {
		t.Skipf("mount xfs: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", mnt).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", mnt, err, out)
		}
	})
	return mnt
}

func used(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Blocks-st.Bfree) * st.Bsize
}

// TestFleetReflink: on XFS with reflink the 20 clones share the golden
// image's extents, so they take about no space; a write to one clone copies
// only what it touches and leaves the golden image alone.
func TestFleetReflink(t *testing.T) {
	mnt := xfsMount(t)
	dataDir := filepath.Join(mnt, "netsan")
	golden := filepath.Join(dataDir, "golden", "g.img")
	// fleetClone makes the golden image itself; measure from after it.
	var base int64
	roots := fleetCloneAfter(t, dataDir, func() { base = used(t, mnt) })
	extra := used(t, mnt) - base
	t.Logf("xfs reflink: 20 clones of a 2 GiB image with 200 MiB of data use %d KiB more (sparse copies: 4000 MiB)", extra>>10)
	if extra > 16*mib {
		t.Errorf("20 reflinked clones use %d MiB, want about 0", extra/mib)
	}
	for _, r := range roots {
		sh, err := Shared(r)
		if err != nil {
			t.Fatalf("%s: %v", r, err)
		}
		if sh < 200*mib {
			t.Errorf("%s: %d MiB shared, want the golden image's 200 MiB", r, sh/mib)
		}
	}

	before := digest(t, golden)
	f, err := os.OpenFile(roots[0], os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 4*mib), 0); err != nil { // over the first data piece
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil { // XFS remaps copy-on-write extents at writeback
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if digest(t, golden) != before {
		t.Error("a write to a reflinked clone changed the golden image")
	}
	if sh, _ := Shared(roots[0]); sh > 196*mib+mib/2 {
		t.Errorf("after a 4 MiB write the clone still shares %d MiB", sh/mib)
	}
}

// fleetCloneAfter is fleetClone with a hook between making the golden image
// and cloning it.
func fleetCloneAfter(t *testing.T, dataDir string, hook func()) []string {
	golden := filepath.Join(dataDir, "golden", "g.img")
	makeGolden(t, golden, 2*gib, 200*mib, 1)
	hook()
	return fleetCloneFrom(t, dataDir)
}
