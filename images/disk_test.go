package images

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestRecognize(t *testing.T) {
	sector := func(off int, b ...byte) []byte {
		d := make([]byte, 64<<10)
		copy(d[off:], b)
		return d
	}
	qcow := func(version byte) []byte { return append([]byte("QFI\xfb\x00\x00\x00"), version, 0, 0, 0, 0) }
	for _, tc := range []struct {
		name   string
		data   []byte
		format string
	}{
		{"MBR", sector(510, 0x55, 0xaa), FormatRaw},
		{"GPT, 512-byte sectors", sector(512, []byte("EFI PART")...), FormatRaw},
		{"GPT, 4096-byte sectors", sector(4096, []byte("EFI PART")...), FormatRaw},
		{"MBR-only 512 bytes", sector(510, 0x55, 0xaa)[:512], FormatRaw},
		{"qcow2 v2", qcow(2), FormatQcow2},
		{"qcow2 v3", qcow(3), FormatQcow2},
		{"qcow2 v9", qcow(9), ""},
		{"qcow2 magic only", []byte("QFI\xfb"), ""},
		{"11 bytes", []byte("hello world"), ""},
		{"empty", nil, ""},
		{"zeros", make([]byte, 1<<20), ""},
		{"signature at the wrong place", sector(511, 0x55, 0xaa), ""},
		{"GPT at LBA 2", sector(1024, []byte("EFI PART")...), ""},
		{"vmdk", append([]byte("KDMV"), make([]byte, 4096)...), ""},
	} {
		format, err := Recognize(bytes.NewReader(tc.data))
		if format != tc.format || (tc.format == "") != errors.Is(err, ErrNotDisk) {
			t.Errorf("%s: Recognize = %q, %v; want %q", tc.name, format, err, tc.format)
		}
	}
}

func TestReadMBR(t *testing.T) {
	var s [512]byte
	copy(s[440:], []byte{0xf1, 0xa5, 0x3d, 0x5e})
	s[446+4], s[446+16+4], s[510], s[511] = 0x0c, 0x83, 0x55, 0xaa
	m, err := ReadMBR(bytes.NewReader(s[:]))
	if err != nil || m.DiskSignature != 0x5e3da5f1 || m.Types != [4]byte{0x0c, 0x83, 0, 0} {
		t.Errorf("ReadMBR = %+v, %v", m, err)
	}
	if _, err := ReadMBR(bytes.NewReader(s[:511])); !errors.Is(err, ErrNoMBR) {
		t.Errorf("ReadMBR of 511 bytes: %v, want ErrNoMBR", err)
	}
}

// TestImportRefusesNonDisks: what is neither a partitioned raw disk nor a
// qcow2 image is refused with the reason, and nothing is written.
func TestImportRefusesNonDisks(t *testing.T) {
	dir := t.TempDir()
	for name, data := range map[string][]byte{
		"short.txt":  []byte("hello world"),
		"random.bin": bytes.Repeat([]byte("not a disk "), 100000),
		"zeros.img":  make([]byte, 1<<20),
	} {
		src := filepath.Join(dir, name)
		if err := os.WriteFile(src, data, 0o644); err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(dir, "golden", name)
		_, err := Import(t.Context(), src, dst, nil)
		if !errors.Is(err, ErrNotDisk) {
			t.Errorf("import %s: %v, want ErrNotDisk", name, err)
		}
		t.Logf("%s: %v", name, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "golden")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("refused imports wrote into %s: %v", filepath.Join(dir, "golden"), err)
	}
}
