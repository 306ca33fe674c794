package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The writer is the guest's netsan.mode=writer (lab/guest/init): a diskless
// machine that boots from its root LUN, lets open-iscsi's iscsid adopt the
// boot session as an installed Debian does, and writes numbered blocks with
// an fsync after each to /writer.dat on the ext4 partition of its root disk
// (lab/mkimage.sh makes it). It prints one line per block fsync acknowledged;
// a target failure while it writes must cost a stall, never a failed write,
// an I/O error in the kernel log or an acknowledged block that is not there
// afterwards.
const (
	MarkerWriter = "NETSAN-LAB-WRITER"
	// WriterPartitionOffset and WriterPartitionSize place the writer's ext4
	// partition (the second) in the golden image, in bytes.
	WriterPartitionOffset = 64 << 20
	WriterPartitionSize   = 32 << 20
	// WriterBlockSize is the size of one numbered block; block n is at n ×
	// WriterBlockSize in the file.
	WriterBlockSize = 4096
	// WriterMaxBlocks is about what the partition holds (32 MiB less the
	// journal and metadata): at ~15 blocks a second under TCG, 6 minutes.
	WriterMaxBlocks = 6000
	writerFile      = "/writer.dat"
)

// WriterImage copies golden to dst and makes the copy boot into the writer,
// which writes blocks blocks. dst can be a host's root, or a golden image to
// import into Ceph for RBD roots.
func WriterImage(golden, dst string, blocks int) error {
	if blocks < 1 || blocks > WriterMaxBlocks {
		return fmt.Errorf("writer: %d blocks, want 1 to %d", blocks, WriterMaxBlocks)
	}
	if err := Clone(golden, dst); err != nil {
		return err
	}
	return SetCommandLine(dst, "netsan.mode=writer netsan.blocks="+strconv.Itoa(blocks), "/initrd.img", "/data.img")
}

// WriterBlock returns block n as the writer writes it: 64 lines of 64 bytes,
// each naming the block and the line, so that a block that landed in the
// wrong place or half-written is told apart from a missing one.
func WriterBlock(n int) []byte {
	b := make([]byte, 0, WriterBlockSize)
	for i := 0; i < WriterBlockSize/64; i++ {
		b = fmt.Appendf(b, "netsan-writer block=%08d line=%02d %08d:%08d:%08d\n", n, i, n, n, n)
	}
	return b
}

// Ack is one block the writer's fsync acknowledged.
type Ack struct {
	Block int
	// Up is the guest's uptime when fsync returned.
	Up time.Duration
}

// WriterRun is what the writer printed on the serial console.
type WriterRun struct {
	Acks []Ack
	// Failed is the writer's failure line (a write or fsync that returned an
	// error, after which it stops), "" when there was none.
	Failed string
	// Kmsg holds the kernel log lines about the disk and the iSCSI
	// connection, printed when the writer stopped.
	Kmsg []string
	// Done is set when the writer finished and unmounted its file system.
	Done bool
}

var (
	ackLine  = regexp.MustCompile(MarkerWriter + ` ack=(\d+) up=(\d+(?:\.\d+)?)`)
	failLine = regexp.MustCompile(MarkerWriter + ` failed=.*`)
	kmsgLine = regexp.MustCompile(MarkerWriter + ` kmsg (.*)`)
	doneLine = regexp.MustCompile(MarkerWriter + ` phase=done `)
)

// ParseWriter reads a writer's run from its serial console text. Kernel
// messages may land in the middle of a line, so lines are matched anywhere.
func ParseWriter(console string) WriterRun {
	var r WriterRun
	for _, line := range strings.Split(console, "\n") {
		line = strings.TrimRight(line, "\r")
		if m := ackLine.FindStringSubmatch(line); m != nil {
			n, _ := strconv.Atoi(m[1])
			up, _ := strconv.ParseFloat(m[2], 64)
			r.Acks = append(r.Acks, Ack{Block: n, Up: time.Duration(up * float64(time.Second))})
		}
		if m := failLine.FindString(line); m != "" && r.Failed == "" {
			r.Failed = m
		}
		if m := kmsgLine.FindStringSubmatch(line); m != nil {
			r.Kmsg = append(r.Kmsg, m[1])
		}
		if doneLine.MatchString(line) {
			r.Done = true
		}
	}
	return r
}

// ioErrors are the kernel's words for I/O that failed: a block layer or
// buffer error, ext4 giving up, or the iSCSI session's replacement timeout
// expiring (after which it fails every command).
var ioErrors = []string{"I/O error", "EXT4-fs error", "Aborting journal", "recovery timed out", "rejecting I/O"}

// IOErrors returns the kernel log lines that report failed I/O.
func (r WriterRun) IOErrors() []string {
	var bad []string
	for _, l := range r.Kmsg {
		for _, e := range ioErrors {
			if strings.Contains(l, e) {
				bad = append(bad, l)
				break
			}
		}
	}
	return bad
}

// ConnErrors returns the kernel log lines, from the first acknowledged
// block on, in which the iSCSI connection failed: each is a target the
// initiator lost while the writer wrote and had to log in to again. Those
// before it are not counted: iscsid adopting the boot session may break
// the connection once.
func (r WriterRun) ConnErrors() []string {
	var lines []string
	for _, l := range r.Kmsg {
		if !strings.Contains(l, "detected conn error") {
			continue
		}
		if m := kmsgTime.FindStringSubmatch(l); m != nil && len(r.Acks) > 0 {
			if at, _ := strconv.ParseFloat(m[1], 64); time.Duration(at*float64(time.Second)) < r.Acks[0].Up {
				continue
			}
		}
		lines = append(lines, l)
	}
	return lines
}

// kmsgTime is a kernel log line's time stamp, seconds since boot.
var kmsgTime = regexp.MustCompile(`^\[\s*(\d+\.\d+)\]`)

// Stall returns the longest time between two consecutive acknowledgements
// and the block acknowledged at its end: the longest the writer waited.
func (r WriterRun) Stall() (gap time.Duration, block int) {
	return r.StallIn(0, math.MaxInt)
}

// StallIn is Stall over the acknowledgements of blocks first to last: the
// longest wait around one event, when first is the last block acknowledged
// before it and last the first after the next.
func (r WriterRun) StallIn(first, last int) (gap time.Duration, block int) {
	block = -1
	for i := 1; i < len(r.Acks); i++ {
		a, b := r.Acks[i-1], r.Acks[i]
		if a.Block < first || b.Block > last {
			continue
		}
		if d := b.Up - a.Up; d > gap {
			gap, block = d, b.Block
		}
	}
	return gap, block
}

// Writer is a guest running the writer.
type Writer struct {
	*Guest
}

// StartWriter boots m, a diskless guest whose root was made with
// WriterImage.
func (l *Lab) StartWriter(ctx context.Context, m Machine) (*Writer, error) {
	g, err := l.Boot(ctx, m)
	if err != nil {
		return nil, err
	}
	return &Writer{Guest: g}, nil
}

// WaitAck waits until the writer has acknowledged block n.
func (w *Writer) WaitAck(ctx context.Context, n int) error {
	_, err := w.WaitLine(ctx, MarkerWriter+" ack="+strconv.Itoa(n)+" up=")
	return err
}

// Acked returns the highest block acknowledged on the console so far, -1
// before the first.
func (w *Writer) Acked() int {
	r := ParseWriter(w.Console())
	if len(r.Acks) == 0 {
		return -1
	}
	return r.Acks[len(r.Acks)-1].Block
}

// Finish waits for the writer to finish and the guest to power off, and
// returns what it printed (also when it failed, as far as it got).
func (w *Writer) Finish(ctx context.Context) (WriterRun, error) {
	_, err := w.WaitLine(ctx, MarkerWriter+" phase=done")
	if err == nil {
		err = w.Wait(ctx)
	}
	return ParseWriter(w.Console()), err
}

// VerifyWriter checks the writer's partition in a disk image (a root image
// file, or an RBD image exported to one) once nothing serves it any more, as
// the next mount would find it: on a copy of the partition, the journal is
// replayed, then e2fsck must find the file system clean and every
// acknowledged block must read back from /writer.dat (with debugfs) as
// written. A writer that wrote everything and unmounted with no I/O error
// left nothing in the journal; finding something there means writes it made
// then are missing.
func VerifyWriter(ctx context.Context, image io.ReaderAt, run WriterRun) error {
	f, err := os.CreateTemp("", "netsan-writer-*.img")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	_, err = io.Copy(f, io.NewSectionReader(image, WriterPartitionOffset, WriterPartitionSize))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("copy the writer's partition: %w", err)
	}
	part := f.Name()
	// e2 runs an e2fsprogs tool on the copy; debugfs reports a missing
	// file on stderr only, so that is kept too.
	var stderr bytes.Buffer
	e2 := func(name string, args ...string) (string, error) {
		stderr.Reset()
		cmd := exec.CommandContext(ctx, name, append(args, part)...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			return "", fmt.Errorf("%s %s: %w\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
		}
		return string(out), nil
	}
	sb, err := e2("dumpe2fs", "-h")
	if err != nil {
		return err
	}
	if strings.Contains(sb, "needs_recovery") {
		if run.Done && run.Failed == "" && len(run.IOErrors()) == 0 {
			return errors.New("the writer unmounted its file system, yet the journal in the image still needs recovery: what the unmount wrote is missing")
		}
		if _, err := e2("e2fsck", "-E", "journal_only", "-y"); err != nil {
			return err
		}
	}
	if _, err := e2("e2fsck", "-f", "-n"); err != nil {
		return err
	}
	data, err := e2("debugfs", "-R", "cat "+writerFile)
	if err != nil {
		return err
	}
	if err := CheckBlocks(strings.NewReader(data), run.Acks); err != nil {
		return fmt.Errorf("%s (%d bytes; debugfs: %s): %w", writerFile, len(data), bytes.TrimSpace(stderr.Bytes()), err)
	}
	return nil
}

// CheckBlocks checks that every acknowledged block reads back from r, the
// writer's file, as WriterBlock wrote it.
func CheckBlocks(r io.ReaderAt, acks []Ack) error {
	var bad []string
	buf := make([]byte, WriterBlockSize)
	for _, a := range acks {
		n, err := r.ReadAt(buf, int64(a.Block)*WriterBlockSize)
		switch {
		case n < len(buf) && (err == nil || errors.Is(err, io.EOF)):
			bad = append(bad, fmt.Sprintf("block %d: missing (%d of %d bytes)", a.Block, n, len(buf)))
		case n < len(buf):
			return fmt.Errorf("read block %d: %w", a.Block, err)
		case !bytes.Equal(buf, WriterBlock(a.Block)):
			first, _, _ := bytes.Cut(buf[:64], []byte("\n"))
			bad = append(bad, fmt.Sprintf("block %d: differs, starts %q", a.Block, first))
		}
	}
	if total := len(bad); total > 0 {
		if total > 10 {
			bad = append(bad[:10], fmt.Sprintf("and %d more", total-10))
		}
		return fmt.Errorf("%d of %d acknowledged blocks do not read back: %s", total, len(acks), strings.Join(bad, "; "))
	}
	return nil
}
