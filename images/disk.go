package images

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// The disk-image formats netsan takes in: a raw disk (what the iSCSI
// target serves) and qcow2, which import converts to raw.
const (
	FormatRaw   = "raw"
	FormatQcow2 = "qcow2"
)

var (
	qcow2Magic = []byte("QFI\xfb")
	gptMagic   = []byte("EFI PART")
)

// ErrNoMBR means the image does not start with a master boot record (no
// boot signature 0x55AA at byte 510).
var ErrNoMBR = errors.New("no MBR boot signature (0x55AA at byte 510)")

// MBR is what netsan reads of a disk's master boot record.
type MBR struct {
	// DiskSignature (bytes 440-443) is what Linux names MBR partitions by:
	// PARTUUID=<signature>-<partition number>.
	DiskSignature uint32
	// Types holds the type byte of each primary partition entry: 0 unused,
	// 0xee the protective entry of a GPT disk.
	Types [4]byte
}

// ReadMBR reads the MBR at the start of the disk image r.
func ReadMBR(r io.ReaderAt) (MBR, error) {
	var sector [512]byte
	if _, err := r.ReadAt(sector[:], 0); err != nil && !errors.Is(err, io.EOF) {
		return MBR{}, fmt.Errorf("read MBR: %w", err)
	}
	return parseMBR(sector[:])
}

// parseMBR reads the MBR in the disk's first sector.
func parseMBR(sector []byte) (MBR, error) {
	if len(sector) < 512 || sector[510] != 0x55 || sector[511] != 0xaa {
		return MBR{}, ErrNoMBR
	}
	m := MBR{DiskSignature: binary.LittleEndian.Uint32(sector[440:444])}
	for i := range m.Types {
		m.Types[i] = sector[446+16*i+4]
	}
	return m, nil
}

// ErrNotDisk refuses a file that is neither a raw disk nor a qcow2 image.
var ErrNotDisk = errors.New("not a disk image")

// Recognize tells the format of the disk image r by its first bytes:
// qcow2 by its magic and version, raw when it starts with a partition table
// (an MBR's boot signature, or a GPT header at LBA 1 for 512- or 4096-byte
// sectors). Anything else (a text file, a bare file system, a vmdk) is
// refused with ErrNotDisk and what was looked for: serving it
// as a disk would give the host one it cannot boot from.
func Recognize(r io.ReaderAt) (string, error) {
	head := make([]byte, 4096+len(gptMagic))
	n, err := r.ReadAt(head, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read header: %w", err)
	}
	head = head[:n]
	if bytes.HasPrefix(head, qcow2Magic) {
		if n < 8 {
			return "", fmt.Errorf("%w: qcow2 magic but only %d bytes", ErrNotDisk, n)
		}
		if v := binary.BigEndian.Uint32(head[4:8]); v != 2 && v != 3 {
			return "", fmt.Errorf("%w: qcow2 version %d (netsan reads 2 and 3)", ErrNotDisk, v)
		}
		return FormatQcow2, nil
	}
	if _, err := parseMBR(head); err == nil {
		return FormatRaw, nil
	}
	for _, lba1 := range []int{512, 4096} {
		if bytes.HasPrefix(head[min(lba1, n):], gptMagic) {
			return FormatRaw, nil
		}
	}
	if n < 512 {
		return "", fmt.Errorf("%w: %d bytes, less than one sector", ErrNotDisk, n)
	}
	return "", fmt.Errorf("%w: no qcow2 magic, no MBR boot signature at byte 510, no GPT header at LBA 1"+
		" (a bare file system needs a partition table around it; convert other formats with qemu-img convert -O qcow2)", ErrNotDisk)
}
