package images

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/netsan/netsan/ceph"
)

// probe returns the image's format, which Recognize must know, and, where
// qemu-img tells it, the size of the disk it holds.
func probe(ctx context.Context, path string) (string, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", 0, err
	}
	format, err := Recognize(f)
	f.Close()
	if err != nil {
		return "", 0, err
	}
	qemu, err := exec.LookPath("qemu-img")
	if err != nil {
		return format, 0, nil
	}
	out, err := exec.CommandContext(ctx, qemu, "info", "--output=json", "-f", format, "--", path).Output()
	if err != nil {
		return "", 0, fmt.Errorf("qemu-img info %s: %w%s", path, err, stderrOf(err))
	}
	var info struct {
		VirtualSize int64 `json:"virtual-size"`
	}
	if err := json.Unmarshal(out, &info); err != nil {
		return "", 0, fmt.Errorf("qemu-img info %s: %w", path, err)
	}
	return format, info.VirtualSize, nil
}

// Import makes dst, a new golden image, from the disk image at src: a raw
// image is cloned (reflink or sparse copy), a qcow2 one converted to raw by
// `qemu-img convert`. Anything Recognize does not know is refused before a
// byte is written. Like a clone,
// dst appears only when complete. It is left read-only (0444): golden
// images are never written. It returns src's format.
func Import(ctx context.Context, src, dst string, progress func(done, total int64)) (string, error) {
	format, vsize, err := probe(ctx, src)
	if err != nil {
		return "", fmt.Errorf("import %s: %w", src, err)
	}
	if format == FormatRaw {
		if _, err := Clone(ctx, src, dst, 0, progress); err != nil {
			return "", fmt.Errorf("import %s: %w", src, err)
		}
		if err := os.Chmod(dst, 0o444); err != nil {
			return "", fmt.Errorf("import %s: %w", src, err)
		}
		return format, nil
	}
	qemu, err := exec.LookPath("qemu-img")
	if err != nil {
		return "", fmt.Errorf("import %s: a %s image needs qemu-img (Debian package qemu-utils)", src, format)
	}
	if _, err := os.Lstat(dst); err == nil {
		return "", fmt.Errorf("import %s: %s: %w", src, dst, os.ErrExist)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return "", fmt.Errorf("import %s: %w", src, err)
	}
	if err := RemoveStale(dst); err != nil {
		return "", err
	}
	tmp, err := createTemp(dst)
	if err != nil {
		return "", fmt.Errorf("import %s: %w", src, err)
	}
	ok := false
	defer func() {
		if !ok {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := check(ctx, qemu, format, src); err != nil {
		return "", fmt.Errorf("import %s: %w", src, err)
	}
	// qemu-img writes the temporary file by name; our descriptor keeps the
	// flock that marks it as a live import, and fsyncs the same inode after.
	if err := convert(ctx, qemu, format, src, tmp.Name(), vsize, progress); err != nil {
		return "", fmt.Errorf("import %s: %w", src, err)
	}
	if err := tmp.Chmod(0o444); err != nil {
		return "", fmt.Errorf("import %s: %w", src, err)
	}
	if err := commit(tmp, dst, false); err != nil {
		return "", fmt.Errorf("import %s: %w", src, err)
	}
	ok = true
	return format, nil
}

// ImportRBD makes dst, a new RBD golden image in the cluster cfg names,
// from the disk image at src (raw or qcow2, as Import): qemu-img writes it
// through its rbd driver (Debian package qemu-block-extra), skipping zeros,
// so the image is as thin as src. An existing dst is refused. An import
// that fails leaves no image behind. It returns src's format.
func ImportRBD(ctx context.Context, cl Cluster, cfg ceph.Config, src string, dst ceph.Name, progress func(done, total int64)) (string, error) {
	format, vsize, err := probe(ctx, src)
	if err != nil {
		return "", fmt.Errorf("import %s: %w", src, err)
	}
	qemu, err := exec.LookPath("qemu-img")
	if err != nil {
		return "", fmt.Errorf("import %s: writing to Ceph needs qemu-img (Debian packages qemu-utils and qemu-block-extra)", src)
	}
	if ok, err := cl.Exists(dst); err != nil {
		return "", fmt.Errorf("import %s: %w", src, err)
	} else if ok {
		return "", fmt.Errorf("import %s: rbd %s: %w", src, dst, os.ErrExist)
	}
	if err := check(ctx, qemu, format, src); err != nil {
		return "", fmt.Errorf("import %s: %w", src, err)
	}
	if err := convert(ctx, qemu, format, src, rbdFilename(cfg, dst), vsize, progress); err != nil {
		// qemu-img made the image before it failed (or was stopped).
		if rerr := cl.Remove(dst); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = fmt.Errorf("%w; and rbd %s, half written, could not be removed: %w", err, dst, rerr)
		}
		if strings.Contains(err.Error(), "Unknown protocol") {
			err = fmt.Errorf("%w (qemu-img lacks its rbd driver: Debian package qemu-block-extra)", err)
		}
		return "", fmt.Errorf("import %s to rbd %s: %w", src, dst, err)
	}
	return format, nil
}

// rbdFilename is qemu's name for an RBD image: rbd:pool/image:conf=…:id=…,
// with ':' and '\' in the values escaped as qemu's rbd driver reads them.
func rbdFilename(cfg ceph.Config, n ceph.Name) string {
	esc := strings.NewReplacer(`\`, `\\`, ":", `\:`).Replace
	name := "rbd:" + esc(n.String())
	if cfg.Conf != "" {
		name += ":conf=" + esc(cfg.Conf)
	}
	if cfg.ID != "" {
		name += ":id=" + esc(cfg.ID)
	}
	return name
}

// check refuses a corrupt image before it is converted: qemu-img convert
// reads a qcow2 cut short as zeros and succeeds. Exit status 3 (leaked
// clusters only) and 63 (the format has no check) are harmless.
func check(ctx context.Context, qemu, format, src string) error {
	out, err := exec.CommandContext(ctx, qemu, "check", "-f", format, "--", src).CombinedOutput()
	var ee *exec.ExitError
	if err == nil || errors.As(err, &ee) && (ee.ExitCode() == 3 || ee.ExitCode() == 63) {
		return nil
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) > 3 {
		lines = append(lines[:2], "…", lines[len(lines)-1])
	}
	return fmt.Errorf("qemu-img check: %w: %s", err, strings.Join(lines, "; "))
}

// convert runs qemu-img convert to raw; its -p progress ("(42.00/100%)",
// separated by carriage returns) is relayed as that share of the disk's
// size (in hundredths of a percent when the size is unknown).
func convert(ctx context.Context, qemu, format, src, dst string, size int64, progress func(done, total int64)) error {
	if size <= 0 {
		size = 10000
	}
	cmd := exec.CommandContext(ctx, qemu, "convert", "-p", "-f", format, "-O", "raw", "--", src, dst)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("qemu-img convert: %w", err)
	}
	sc := bufio.NewScanner(out)
	sc.Split(splitCR)
	for sc.Scan() {
		if pct, ok := parseProgress(sc.Text()); ok && progress != nil {
			progress(int64(pct/100*float64(size)), size)
		}
	}
	if err := cmd.Wait(); err != nil {
		return fmt.Errorf("qemu-img convert: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// parseProgress reads one qemu-img -p line, "    (42.00/100%)", as 42.
func parseProgress(line string) (float64, bool) {
	line = strings.TrimSpace(line)
	i, j := strings.IndexByte(line, '('), strings.Index(line, "/100%)")
	if i < 0 || j <= i {
		return 0, false
	}
	pct, err := strconv.ParseFloat(line[i+1:j], 64)
	if err != nil || !(pct >= 0 && pct <= 100) {
		return 0, false
	}
	return pct, true
}

// splitCR splits qemu-img's progress output at \r or \n.
func splitCR(data []byte, atEOF bool) (int, []byte, error) {
	if i := bytes.IndexAny(data, "\r\n"); i >= 0 {
		return i + 1, data[:i], nil
	}
	if atEOF && len(data) > 0 {
		return len(data), data, nil
	}
	return 0, nil, nil
}

func stderrOf(err error) string {
	var ee *exec.ExitError
	if errors.As(err, &ee) && len(ee.Stderr) > 0 {
		return ": " + strings.TrimSpace(string(ee.Stderr))
	}
	return ""
}
