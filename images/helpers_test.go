package images

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.uber.org/zap/zaptest"
	"golang.org/x/sys/unix"

	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/netsantest"
)

const (
	mib = int64(1) << 20
	gib = int64(1) << 30
)

// makeGolden writes a sparse disk image (with an MBR boot signature) of
// size bytes holding data bytes of pseudo-random content in 4 MiB pieces
// spread evenly over it. seed picks the content. One random piece is made
// and each copy of it stamped with its number in every 4 KiB block: random
// generation is slow under -race.
func makeGolden(t testing.TB, path string, size, data int64, seed uint64) {
	t.Helper()
	const piece = 4 << 20
	n := data / piece
	stride := (size / n) &^ (mib - 1)
	buf := make([]byte, piece)
	_, _ = rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1, 2, 3}).Read(buf)
	netsantest.Disk(t, path, size, func(w io.WriterAt) error {
		for i := int64(0); i < n; i++ {
			for b := 0; b < piece; b += 4096 {
				binary.LittleEndian.PutUint64(buf[b:], uint64(i))
			}
			if _, err := w.WriteAt(buf, i*stride); err != nil {
				return err
			}
		}
		return nil
	})
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// digest is a content hash of the whole file that does not depend on how it
// is stored: SHA-256 over the CRC-32C of each 1 MiB block (CRC-32C has CPU
// support; SHA-256 of every block took most of the test's CPU time). A block that
// SEEK_DATA shows to be all hole is not read: its hash is that of 1 MiB of
// zeros, which is also what reading it would give, so a copy that writes
// zeros where the original has a hole hashes the same. (Reading 2 GiB of
// holes costs 15-30 s on the 2-core test machines.) It uses the kernel's
// SEEK_DATA directly, not the package's extent walker under test.
func digest(t testing.TB, path string) string {
	t.Helper()
	// O_DIRECT: the test machines fill new page-cache pages slowly, and 20
	// clones would need 4 GiB of them.
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_DIRECT, 0)
	if errors.Is(err, unix.EINVAL) { // no O_DIRECT here (tmpfs before Linux 6.6)
		f, err = os.Open(path)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	size := fi.Size()
	buf := make([]byte, mib)
	zeroSum := crc32.Checksum(make([]byte, mib), castagnoli)
	all := sha256.New()
	nextData := int64(-1) // offset of the next data at or after off; -1 = unknown
	for off := int64(0); off < size; off += mib {
		n := min(mib, size-off)
		if nextData < off {
			d, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
			switch {
			case err == unix.ENXIO:
				d = size
			case err != nil:
				t.Fatal(err)
			}
			nextData = d
		}
		if n == mib && nextData >= off+n {
			_ = binary.Write(all, binary.LittleEndian, zeroSum)
			continue
		}
		if _, err := f.ReadAt(buf[:n], off); err != nil && err != io.EOF {
			t.Fatal(err)
		}
		_ = binary.Write(all, binary.LittleEndian, crc32.Checksum(buf[:n], castagnoli))
	}
	return fmt.Sprintf("%s/%d", hex.EncodeToString(all.Sum(nil)[:12]), size)
}

// fleet writes an inventory with n hosts whose roots are cloned from image
// "golden" (dataDir/golden/g.img) at rootSize, and loads it.
func fleet(t testing.TB, dataDir string, n int, rootSize string) *inventory.Inventory {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, `
[server]
address  = "198.18.0.1"
data_dir = %q

[dhcp]
subnet = "198.18.0.0/24"

[iscsi]
base_iqn = "iqn.2026-11.example.lab"

[[image]]
name = "golden"
path = "golden/g.img"
`, dataDir)
	for i := range n {
		fmt.Fprintf(&b, `
[[host]]
name = "node%02d"
mac  = "52:54:00:00:01:%02x"
ip   = "198.18.0.%d"
root = { image = "roots/node%02d.img", from = "golden", size = %q }
`, i, i, 11+i, i, rootSize)
	}
	path := filepath.Join(t.TempDir(), "netsan.toml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	inv, ps, err := inventory.Load(path)
	if err != nil {
		t.Fatalf("inventory: %v %v", err, ps)
	}
	return inv
}

// provisioned is a fleet of n hosts whose roots of rootSize Ensure has
// cloned from a 64 MiB golden image holding 8 MiB of data; seed picks the
// data.
func provisioned(t testing.TB, n int, rootSize string, seed uint64) *inventory.Inventory {
	t.Helper()
	dir := t.TempDir()
	makeGolden(t, filepath.Join(dir, "golden", "g.img"), 64*mib, 8*mib, seed)
	inv := fleet(t, dir, n, rootSize)
	if err := Ensure(t.Context(), inv, nil, zaptest.NewLogger(t)); err != nil {
		t.Fatal(err)
	}
	return inv
}

func allocated(t testing.TB, path string) int64 {
	t.Helper()
	_, a, err := Usage(path)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// temps lists the temporary clone files of dst.
func temps(t testing.TB, dst string) []string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(filepath.Dir(dst), tempPrefix(dst)+"*"))
	if err != nil {
		t.Fatal(err)
	}
	return m
}
