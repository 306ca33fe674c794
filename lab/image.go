package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// ScratchSector is where the guest's /init stamps "netsan-lab host=NAME": in
// the gap before the boot partition, so the filesystem is never touched.
const ScratchSector = 1024

// RepoRoot finds the module root (the directory holding go.mod) from the
// working directory upwards.
func RepoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("go.mod not found above the working directory")
		}
		dir = parent
	}
}

// GoldenImage builds (or finds cached) the lab's golden image with
// lab/mkimage.sh and returns its path (build/lab/golden.img).
func GoldenImage(ctx context.Context) (string, error) {
	root, err := RepoRoot()
	if err != nil {
		return "", err
	}
	cmd := exec.CommandContext(ctx, filepath.Join(root, "lab", "mkimage.sh"))
	cmd.Dir = root
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("lab/mkimage.sh: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	return lines[len(lines)-1], nil
}

// Clone copies an image: a reflink where the filesystem has them, else a
// sparse copy that skips all-zero blocks.
func Clone(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	if unix.IoctlFileClone(int(out.Fd()), int(in.Fd())) == nil {
		return out.Close()
	}
	st, err := in.Stat()
	if err != nil {
		out.Close()
		return err
	}
	buf := make([]byte, 1<<20)
	zero := make([]byte, len(buf))
	for off := int64(0); ; {
		n, err := in.Read(buf)
		if n > 0 && !bytes.Equal(buf[:n], zero[:n]) {
			if _, werr := out.WriteAt(buf[:n], off); werr != nil {
				out.Close()
				return fmt.Errorf("clone %s: %w", dst, werr)
			}
		}
		off += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			out.Close()
			return fmt.Errorf("clone %s: %w", src, err)
		}
	}
	if err := out.Truncate(st.Size()); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Stamp returns the host name the guest stamped into image's scratch
// sector, or "" when no guest has written there.
func Stamp(image string) (string, error) {
	f, err := os.Open(image)
	if err != nil {
		return "", err
	}
	defer f.Close()
	buf := make([]byte, 512)
	if _, err := f.ReadAt(buf, ScratchSector*512); err != nil {
		return "", fmt.Errorf("%s: scratch sector: %w", image, err)
	}
	line, _, _ := bytes.Cut(buf, []byte("\n"))
	name, ok := bytes.CutPrefix(line, []byte("netsan-lab host="))
	if !ok {
		return "", nil
	}
	return string(name), nil
}
