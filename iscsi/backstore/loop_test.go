package backstore

import (
	"os/exec"
	"strings"
	"testing"
)

func attachLoop(t *testing.T, img string) (string, error) {
	out, err := exec.Command("losetup", "--find", "--show", img).Output()
	if err != nil {
		return "", err
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	return dev, nil
}
