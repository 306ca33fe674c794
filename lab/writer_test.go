package lab

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The block the guest's shell writes (writer_block in lab/guest/init, run
// here by busybox sh) is byte for byte the one the host checks for.
func TestWriterBlockMatchesGuest(t *testing.T) {
	if _, err := exec.LookPath("busybox"); err != nil {
		t.Skip("busybox not installed")
	}
	root, err := RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	guestInit, err := os.ReadFile(filepath.Join(root, "lab", "guest", "init"))
	if err != nil {
		t.Fatal(err)
	}
	// Only the function, not the rest of /init (which mounts and powers off).
	fn := section(t, string(guestInit), "\nwriter_block() {\n", "\n}\n")
	for _, n := range []int{0, 7, 12345678} {
		dir := t.TempDir()
		script := strings.ReplaceAll(fn, "/tmp/block", filepath.Join(dir, "block")) + "\nwriter_block " + strconv.Itoa(n) + "\n"
		if out, err := exec.Command("busybox", "sh", "-c", script).CombinedOutput(); err != nil {
			t.Fatalf("writer_block %d: %v: %s", n, err, out)
		}
		got, err := os.ReadFile(filepath.Join(dir, "block"))
		if err != nil {
			t.Fatal(err)
		}
		if want := WriterBlock(n); !bytes.Equal(got, want) {
			t.Errorf("guest block %d (%d bytes) starts %q, want %d bytes starting %q", n, len(got), got[:min(64, len(got))], len(want), want[:64])
		}
	}
	if len(WriterBlock(1)) != WriterBlockSize {
		t.Errorf("WriterBlock is %d bytes, want %d", len(WriterBlock(1)), WriterBlockSize)
	}
}

// section returns text from the line starting with start through end.
func section(t *testing.T, text, start, end string) string {
	t.Helper()
	i := strings.Index(text, start)
	if i < 0 {
		t.Fatalf("%q not found", start)
	}
	j := strings.Index(text[i:], end)
	if j < 0 {
		t.Fatalf("%q not found after %q", end, start)
	}
	return text[i : i+j+len(end)]
}

func TestParseWriter(t *testing.T) {
	console := "NETSAN-LAB-MARKER host=node9 up=20.1\r\n" +
		"NETSAN-LAB-WRITER ack=0 up=30.00\r\n" +
		"NETSAN-LAB-WRITER ack=1 up=30.25\r\n" +
		// A kernel message printed in the middle of a line.
		"[   31.0] connection1:0: detected conn error (1020)\r\nNETSAN-LAB-WRI" +
		"[   31.1] sd 2:0:0:0: [sda] tag#3 timing out command\r\n" +
		"NETSAN-LAB-WRITER ack=2 up=36.75\r\n" +
		"NETSAN-LAB-WRITER ack=3 up=37.00\r\n" +
		// iscsid adopting the boot session, before the first block.
		"NETSAN-LAB-WRITER kmsg [   25.0] connection1:0: detected conn error (1020)\r\n" +
		"NETSAN-LAB-WRITER kmsg [   31.0] connection1:0: detected conn error (1020)\r\n" +
		"NETSAN-LAB-WRITER kmsg [   36.5] connection1:0: detected conn error (1020)\r\n" +
		"NETSAN-LAB-WRITER kmsg [   37.5] I/O error, dev sda, sector 131200 op 0x1:(WRITE)\r\n" +
		"NETSAN-LAB-WRITER phase=done host=node9 acked=4 failed=0 up=38.0\r\n"
	r := ParseWriter(console)
	if len(r.Acks) != 4 || r.Acks[3] != (Ack{Block: 3, Up: 37 * time.Second}) {
		t.Errorf("acks = %v", r.Acks)
	}
	if gap, block := r.Stall(); gap != 6500*time.Millisecond || block != 2 {
		t.Errorf("stall = %v before block %d, want 6.5s before block 2", gap, block)
	}
	// Around an event after block 2: the stall before it is not counted.
	if gap, block := r.StallIn(2, 3); gap != 250*time.Millisecond || block != 3 {
		t.Errorf("stall in blocks 2-3 = %v before block %d, want 250ms before block 3", gap, block)
	}
	if len(r.Kmsg) != 4 || len(r.ConnErrors()) != 2 {
		t.Errorf("kmsg = %q, conn errors %q", r.Kmsg, r.ConnErrors())
	}
	if bad := r.IOErrors(); len(bad) != 1 || !strings.Contains(bad[0], "sector 131200") {
		t.Errorf("I/O errors = %q", bad)
	}
	if !r.Done || r.Failed != "" {
		t.Errorf("done %v, failed %q", r.Done, r.Failed)
	}

	r = ParseWriter("NETSAN-LAB-WRITER ack=0 up=1.5\nNETSAN-LAB-WRITER failed=1 error=\"dd: fsync: I/O error\"\n")
	if len(r.Acks) != 1 || r.Failed == "" || r.Done {
		t.Errorf("failed run parsed as %+v", r)
	}
	if gap, block := r.Stall(); gap != 0 || block != -1 {
		t.Errorf("one ack: stall %v block %d", gap, block)
	}
}

func TestCheckBlocks(t *testing.T) {
	file := append(append(WriterBlock(0), WriterBlock(1)...), WriterBlock(7)...)
	acks := []Ack{{Block: 0}, {Block: 1}}
	if err := CheckBlocks(bytes.NewReader(file), acks); err != nil {
		t.Errorf("good blocks: %v", err)
	}
	for _, c := range []struct {
		acks []Ack
		want string
	}{
		{[]Ack{{Block: 0}, {Block: 2}}, "block 2: differs, starts \"netsan-writer block=00000007 line=00"},
		{[]Ack{{Block: 3}, {Block: 4}}, "2 of 2 acknowledged blocks do not read back: block 3: missing (0 of 4096 bytes)"},
	} {
		err := CheckBlocks(bytes.NewReader(file), c.acks)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckBlocks(%v) = %v, want %q", c.acks, err, c.want)
		}
	}
}

// VerifyWriter reads the file through the file system at the writer
// partition's offset, with e2fsprogs, as a mount would find it (journal
// replayed), and catches a block that is not there, a damaged file system
// and a journal left full by a writer that said it unmounted.
func TestVerifyWriter(t *testing.T) {
	for _, tool := range []string{"mke2fs", "e2fsck", "debugfs", "dumpe2fs"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skip(tool + " not installed (e2fsprogs)")
		}
	}
	dir := t.TempDir()
	img := filepath.Join(dir, "disk.img")
	part := img + "?offset=" + strconv.Itoa(WriterPartitionOffset)
	// run returns the tool's standard output (debugfs prints its banner on
	// standard error).
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).Output()
		if err != nil {
			t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	file := func(name string, data []byte) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	run("truncate", "-s", strconv.Itoa(WriterPartitionOffset+WriterPartitionSize), img)
	run("mke2fs", "-q", "-t", "ext4", "-b", "4096", "-E", "offset="+strconv.Itoa(WriterPartitionOffset), img, strconv.Itoa(WriterPartitionSize/4096))
	// Blocks 0 to 4; block 2 is stale in its home location and right only
	// in the journal (a committed transaction not yet checkpointed: what a
	// guest that fsynced and then died leaves). Not zeros: debugfs would
	// leave a hole.
	var data []byte
	for n := 0; n < 5; n++ {
		b := WriterBlock(n)
		if n == 2 {
			b = WriterBlock(99)
		}
		data = append(data, b...)
	}
	run("debugfs", "-w", "-R", "write "+file("writer.dat", data)+" writer.dat", part)
	physical := strings.Fields(run("debugfs", "-R", "blocks writer.dat", part))
	if len(physical) < 3 {
		t.Fatalf("debugfs blocks writer.dat: %q", physical)
	}
	cmds := "jo\njw -b " + physical[2] + " " + file("block2", WriterBlock(2)) + "\njc\n"
	run("debugfs", "-w", "-f", file("journal.cmd", []byte(cmds)), part)

	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	acks := []Ack{{Block: 0}, {Block: 1}, {Block: 2}, {Block: 3}, {Block: 4}}
	if err := VerifyWriter(ctx, f, WriterRun{Acks: acks}); err != nil {
		t.Errorf("VerifyWriter: %v", err)
	}
	if err := VerifyWriter(ctx, f, WriterRun{Acks: acks, Done: true}); err == nil || !strings.Contains(err.Error(), "journal") {
		t.Errorf("VerifyWriter of a run that unmounted, journal not empty = %v", err)
	}
	if err := VerifyWriter(ctx, f, WriterRun{Acks: append(acks, Ack{Block: 5})}); err == nil || !strings.Contains(err.Error(), "block 5: missing") {
		t.Errorf("VerifyWriter with block 5 acknowledged but not written = %v", err)
	}
	// The image itself was not touched: the journal is replayed on a copy.
	if sb := run("dumpe2fs", "-h", part); !strings.Contains(sb, "needs_recovery") {
		t.Errorf("VerifyWriter replayed the journal in the image itself")
	}
	// A file system e2fsck does not find clean fails, whatever the blocks:
	// zero the first group descriptor's bitmap locations (block 1).
	w, err := os.OpenFile(img, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.WriteAt(make([]byte, 8), WriterPartitionOffset+4096); err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := VerifyWriter(ctx, f, WriterRun{Acks: acks}); err == nil || !strings.Contains(err.Error(), "e2fsck") {
		t.Errorf("VerifyWriter on a damaged file system = %v, want an e2fsck failure", err)
	}
}
