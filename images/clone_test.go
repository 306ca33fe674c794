package images

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"
)

// childEnv makes the test binary a clone that stops mid-copy, for the kill
// -9 test: "SRC DST".
const childEnv = "NETSAN_IMAGES_CLONE_CHILD"

func TestMain(m *testing.M) {
	if arg := os.Getenv(childEnv); arg != "" {
		os.Exit(cloneChild(arg))
	}
	os.Exit(m.Run())
}

// cloneChild clones and, once part of the data is copied, says so on
// stdout and waits to be killed.
func cloneChild(arg string) int {
	src, dst, _ := strings.Cut(arg, " ")
	_, err := Clone(context.Background(), src, dst, 0, func(done, total int64) {
		if done > 0 {
			fmt.Printf("copying %d/%d\n", done, total)
			time.Sleep(time.Minute) // the parent kills us here
		}
	})
	fmt.Fprintln(os.Stderr, "clone child: not killed:", err)
	return 3
}

func fsType(t testing.TB, dir string) string {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	switch st.Type {
	case unix.EXT4_SUPER_MAGIC:
		return "ext4"
	case unix.TMPFS_MAGIC:
		return "tmpfs"
	case unix.XFS_SUPER_MAGIC:
		return "xfs"
	case unix.BTRFS_SUPER_MAGIC:
		return "btrfs"
	}
	return fmt.Sprintf("0x%x", st.Type)
}

// fleetCloneFrom provisions 20 hosts from the golden image in
// dataDir/golden/g.img through Ensure, as serve does, and checks every
// clone reads back identical and the golden image is unchanged. It returns
// the roots.
func fleetCloneFrom(t *testing.T, dataDir string) (roots []string) {
	const hosts = 20
	golden := filepath.Join(dataDir, "golden", "g.img")
	before := digest(t, golden)
	inv := fleet(t, dataDir, hosts, "2GiB")

	if err := Ensure(t.Context(), inv, nil, zaptest.NewLogger(t)); err != nil {
		t.Fatalf("Ensure: %v", err)
	}
	for i := range inv.Hosts {
		r := inv.Hosts[i].Root.Image
		roots = append(roots, r)
		size, _, err := Usage(r)
		if err != nil {
			t.Fatalf("%s: %v", inv.Hosts[i].Name, err)
		}
		if size != 2*gib {
			t.Errorf("%s: size %d, want %d", r, size, 2*gib)
		}
		if got := digest(t, r); got != before {
			t.Errorf("%s: content %s differs from the golden image's %s", r, got, before)
		}
		if tt := temps(t, r); len(tt) != 0 {
			t.Errorf("%s: temporary files left: %v", r, tt)
		}
	}
	if after := digest(t, golden); after != before {
		t.Errorf("golden image changed: %s before, %s after", before, after)
	}
	// A second Ensure has nothing to do and must not touch the roots.
	st, _ := os.Stat(roots[0])
	if err := Ensure(t.Context(), inv, nil, zaptest.NewLogger(t)); err != nil {
		t.Fatalf("second Ensure: %v", err)
	}
	if st2, _ := os.Stat(roots[0]); !os.SameFile(st, st2) || !st2.ModTime().Equal(st.ModTime()) {
		t.Errorf("second Ensure replaced %s", roots[0])
	}
	return roots
}

// TestFleetSparseCopy: on a file system without reflink (ext4, tmpfs) each
// clone allocates the golden image's 200 MiB and nothing of its holes.
func TestFleetSparseCopy(t *testing.T) {
	dir := t.TempDir()
	fs := fsType(t, dir)
	if fs == "tmpfs" { // 4 GiB of clones would sit in RAM
		d, err := os.MkdirTemp("/var/tmp", "netsan-images-test-")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.RemoveAll(d) })
		dir, fs = d, fsType(t, d)
	}
	if fs == "xfs" || fs == "btrfs" {
		t.Skipf("%s is on %s, which may reflink; TestFleetReflink covers that", dir, fs)
	}
	roots := fleetCloneAfter(t, dir, func() {})
	var sum int64
	for _, r := range roots {
		a := allocated(t, r)
		sum += a
		if a < 200*mib || a > 204*mib {
			t.Errorf("%s: %d MiB allocated, want the golden image's 200 MiB of data", r, a/mib)
		}
		if sh, err := Shared(r); err != nil && !errors.Is(err, ErrNoExtentMap) {
			t.Errorf("%s: Shared: %v", r, err)
		} else if sh != 0 {
			t.Errorf("%s: %d bytes shared on %s, want 0", r, sh, fs)
		}
	}
	t.Logf("%s: 20 clones of a 2 GiB image with 200 MiB of data allocate %d MiB (20 x 200 = 4000)", fs, sum/mib)
}

func TestCloneGrowsRefusesAndFails(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	makeGolden(t, src, 64*mib, 8*mib, 2)
	dst := filepath.Join(dir, "roots", "a.img")

	var calls int
	var last [2]int64
	if _, err := Clone(t.Context(), src, dst, 256*mib, func(done, total int64) {
		calls++
		if done < last[0] {
			t.Errorf("progress went back: %d after %d", done, last[0])
		}
		last = [2]int64{done, total}
	}); err != nil {
		t.Fatal(err)
	}
	if calls == 0 || last[0] != last[1] {
		t.Errorf("progress: %d calls, last %d/%d; want calls ending at done = total", calls, last[0], last[1])
	}
	size, _, err := Usage(dst)
	if err != nil || size != 256*mib {
		t.Fatalf("grown clone: size %d, %v; want %d", size, err, 256*mib)
	}
	want, _ := os.ReadFile(src)
	got, _ := os.ReadFile(dst)
	if !bytes.Equal(got[:len(want)], want) {
		t.Error("grown clone: first 64 MiB differ from the source")
	}
	if !bytes.Equal(got[len(want):], make([]byte, len(got)-len(want))) {
		t.Error("grown clone: the grown part is not zero")
	}

	if _, err := Clone(t.Context(), src, dst, 0, nil); !errors.Is(err, os.ErrExist) {
		t.Errorf("clone over an existing root: %v, want ErrExist", err)
	}
	if _, err := Clone(t.Context(), src, filepath.Join(dir, "small.img"), 32*mib, nil); err == nil {
		t.Error("clone to a size below the source's: no error")
	}
	if _, err := os.Stat(filepath.Join(dir, "small.img")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused clone left a file: %v", err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	cancelled := filepath.Join(dir, "cancelled.img")
	if _, err := Clone(ctx, src, cancelled, 0, nil); err == nil {
		// A reflink is one ioctl and never sees the context; a copy must stop.
		if fs := fsType(t, dir); fs != "xfs" && fs != "btrfs" {
			t.Error("clone with a cancelled context: no error")
		}
	} else if _, err := os.Stat(cancelled); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("cancelled clone left its final name: %v", err)
	}
	if tt := temps(t, cancelled); len(tt) != 0 {
		t.Errorf("cancelled clone left %v", tt)
	}
}

// TestKill9MidClone kills a cloning process half-way: nothing may appear
// under the final name, and the next clone removes the leftover.
func TestKill9MidClone(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "golden.img")
	makeGolden(t, src, 512*mib, 64*mib, 3)
	dst := filepath.Join(dir, "roots", "victim.img")

	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+src+" "+dst)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })

	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(out).ReadString('\n')
		line <- s
	}()
	select {
	case s := <-line:
		if !strings.HasPrefix(s, "copying") {
			t.Fatalf("child said %q, stderr %s", s, stderr.String())
		}
		t.Logf("child: %s", strings.TrimSpace(s))
	case <-time.After(60 * time.Second):
		t.Fatalf("child did not start copying; stderr %s", stderr.String())
	}
	if err := cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("child: %v, want killed", err)
	}

	if _, err := os.Lstat(dst); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("after kill -9 the final name exists: %v", err)
	}
	left := temps(t, dst)
	if len(left) != 1 {
		t.Fatalf("after kill -9: temporary files %v, want the one the child was writing", left)
	}
	if _, err := Clone(t.Context(), src, dst, 0, nil); err != nil {
		t.Fatalf("clone after the crash: %v", err)
	}
	if tt := temps(t, dst); len(tt) != 0 {
		t.Errorf("stale temporary files not removed: %v", tt)
	}
	if digest(t, dst) != digest(t, src) {
		t.Error("clone after the crash differs from its source")
	}
}

func TestRemoveStaleSparesLiveClone(t *testing.T) {
	dir := t.TempDir()
	dst := filepath.Join(dir, "a.img")
	live, err := createTemp(dst)
	if err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	dead := filepath.Join(dir, tempPrefix(dst)+"dead")
	if err := os.WriteFile(dead, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(dir, tempPrefix(filepath.Join(dir, "b.img"))+"dead")
	if err := os.WriteFile(other, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := RemoveStale(dst); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(live.Name()); err != nil {
		t.Errorf("a clone in progress (locked) was removed: %v", err)
	}
	if _, err := os.Stat(dead); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an unlocked leftover was kept: %v", err)
	}
	if _, err := os.Stat(other); err != nil {
		t.Errorf("another image's leftover was removed: %v", err)
	}
}

func TestSparseCopyWithoutCopyFileRange(t *testing.T) {
	// The buffered fallback, driven directly: same content, same holes.
	dir := t.TempDir()
	src := filepath.Join(dir, "src.img")
	makeGolden(t, src, 128*mib, 16*mib, 4)
	in, err := os.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	exts, err := dataExtents(in, 128*mib)
	if err != nil {
		t.Fatal(err)
	}
	out, err := os.Create(filepath.Join(dir, "dst.img"))
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	if err := out.Truncate(128 * mib); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, chunk)
	var data int64
	for _, e := range exts {
		data += e.Len
		for off := e.Off; off < e.Off+e.Len; {
			n, err := copyBuffered(in, out, off, buf[:min(e.Off+e.Len-off, chunk)])
			if err != nil {
				t.Fatal(err)
			}
			off += n
		}
	}
	if data < 16*mib || data > 17*mib {
		t.Errorf("SEEK_DATA found %d MiB of data, want 16", data/mib)
	}
	if digest(t, out.Name()) != digest(t, src) {
		t.Error("buffered copy differs")
	}
	if a := allocated(t, out.Name()); a > 17*mib {
		t.Errorf("buffered copy allocated %d MiB, want 16", a/mib)
	}
}

func TestImportRawAndQcow2(t *testing.T) {
	dir := t.TempDir()
	raw := filepath.Join(dir, "in.raw")
	makeGolden(t, raw, 64*mib, 8*mib, 5)
	want := digest(t, raw)

	dst := filepath.Join(dir, "golden", "raw.img")
	format, err := Import(t.Context(), raw, dst, nil)
	if err != nil || format != "raw" {
		t.Fatalf("import raw: %q, %v", format, err)
	}
	if digest(t, dst) != want {
		t.Error("imported raw image differs")
	}
	if fi, _ := os.Stat(dst); fi.Mode().Perm() != 0o444 {
		t.Errorf("golden image mode %v, want read-only", fi.Mode().Perm())
	}
	if _, err := Import(t.Context(), raw, dst, nil); !errors.Is(err, os.ErrExist) {
		t.Errorf("import over an existing golden image: %v, want ErrExist", err)
	}

	qemu, err := exec.LookPath("qemu-img")
	if err != nil {
		t.Skip("qemu-img not installed (qemu-utils): qcow2 import not tested")
	}
	qcow := filepath.Join(dir, "in.qcow2")
	if out, err := exec.Command(qemu, "convert", "-f", "raw", "-O", "qcow2", raw, qcow).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img: %v %s", err, out)
	}
	dst2 := filepath.Join(dir, "golden", "q.img")
	var last int64
	format, err = Import(t.Context(), qcow, dst2, func(done, total int64) { last = done * 100 / total })
	if err != nil || format != "qcow2" {
		t.Fatalf("import qcow2: %q, %v", format, err)
	}
	if digest(t, dst2) != want {
		t.Error("image imported from qcow2 differs from the raw original")
	}
	if last != 100 {
		t.Errorf("qemu-img progress ended at %d%%", last)
	}
	if a := allocated(t, dst2); a > 12*mib {
		t.Errorf("imported qcow2 allocates %d MiB for 8 MiB of data: not sparse", a/mib)
	}
	if tt := temps(t, dst2); len(tt) != 0 {
		t.Errorf("temporary files left: %v", tt)
	}
	bad := filepath.Join(dir, "bad.qcow2")
	if err := os.WriteFile(bad, append([]byte("QFI\xfb"), make([]byte, 100)...), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(t.Context(), bad, filepath.Join(dir, "golden", "bad.img"), nil); err == nil {
		t.Error("import of a corrupt qcow2: no error")
	}
	// A real qcow2 cut short: qemu-img knows the format, the convert fails.
	cut := filepath.Join(dir, "cut.qcow2")
	b, err := os.ReadFile(qcow)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cut, b[:len(b)/2], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Import(t.Context(), cut, filepath.Join(dir, "golden", "cut.img"), nil); err == nil {
		t.Error("import of a truncated qcow2: no error")
	} else {
		t.Logf("truncated qcow2: %v", err)
	}
	for _, name := range []string{"bad.img", "cut.img"} {
		p := filepath.Join(dir, "golden", name)
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("failed import left its final name %s: %v", name, err)
		}
		if tt := temps(t, p); len(tt) != 0 {
			t.Errorf("failed import left %v", tt)
		}
	}
}
