package lab

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// CPUGroup accounts the CPU time of processes and every descendant they
// fork: in.tftpd forks a child per transfer and ignores SIGCHLD, so its
// children are reaped by the kernel and never reach its own cutime.
type CPUGroup struct {
	dir  string
	read func() time.Duration
}

// NewCPUGroup makes a cgroup named prefix-<pid> (cgroup v2, or v1
// cpuacct). Remove deletes it.
func NewCPUGroup(prefix string) (*CPUGroup, error) {
	name := fmt.Sprintf("%s-%d", prefix, os.Getpid())
	for _, root := range []string{"/sys/fs/cgroup", "/sys/fs/cgroup/unified"} {
		if _, err := os.Stat(filepath.Join(root, "cgroup.controllers")); err != nil {
			continue
		}
		dir := filepath.Join(root, name)
		if err := os.Mkdir(dir, 0o755); err != nil {
			continue
		}
		return &CPUGroup{dir: dir, read: func() time.Duration {
			b, _ := os.ReadFile(filepath.Join(dir, "cpu.stat"))
			for line := range strings.Lines(string(b)) {
				if v, ok := strings.CutPrefix(line, "usage_usec "); ok {
					n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
					return time.Duration(n) * time.Microsecond
				}
			}
			return 0
		}}, nil
	}
	dir := filepath.Join("/sys/fs/cgroup/cpuacct", name)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return nil, fmt.Errorf("no cgroup for CPU accounting: %w", err)
	}
	return &CPUGroup{dir: dir, read: func() time.Duration {
		b, _ := os.ReadFile(filepath.Join(dir, "cpuacct.usage"))
		n, _ := strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64)
		return time.Duration(n)
	}}, nil
}

// Add moves process pid into the group; what it forks afterwards is in it
// too.
func (g *CPUGroup) Add(pid int) error {
	return os.WriteFile(filepath.Join(g.dir, "cgroup.procs"), []byte(strconv.Itoa(pid)), 0o644)
}

// Usage is the CPU time the group's processes have used, those that
// exited included.
func (g *CPUGroup) Usage() time.Duration { return g.read() }

// Remove deletes the group; its processes must have exited.
func (g *CPUGroup) Remove() { os.Remove(g.dir) }
