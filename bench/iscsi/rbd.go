//go:build ceph

package main

import (
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"time"

	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/ceph/cephtest"
	"github.com/netsan/netsan/iscsi"
	"github.com/netsan/netsan/iscsi/backstore"
)

// rbdLUNs are two RBD images of size bytes, written through once so reads
// fetch data, in a single-node cluster on memstore started here; a third
// like them takes rbd bench's load, so that no one's exclusive lock moves.
func rbdLUNs(dir string, size int64) (*luns, error) {
	if _, err := exec.LookPath("rbd"); err != nil {
		return nil, fmt.Errorf("rbd not installed (make deps-ceph)")
	}
	tc, err := cephtest.Launch(cephtest.Options{Dir: dir, StoreBytes: 4*size + 1<<30})
	if err != nil {
		return nil, err
	}
	c, err := ceph.Connect(ceph.Config{Conf: tc.Conf, Pool: tc.Pool}, 10*time.Second)
	if err != nil {
		tc.Stop()
		return nil, err
	}
	l := &luns{close: func() { c.Close(); tc.Stop() }}
	for _, img := range []string{"netsan", "tgt", "ceiling"} {
		name := tc.Pool + "/" + img
		_, err := tc.Rbd("create", "--size", fmt.Sprintf("%dB", size), name)
		if err == nil {
			_, err = tc.Rbd("bench", "--io-type", "write", "--io-size", "4M", "--io-threads", "4",
				"--io-total", strconv.FormatInt(size, 10), "--io-pattern", "seq", name)
		}
		if err != nil {
			l.close()
			return nil, err
		}
	}
	l.netsan = iscsi.LUN{Number: 0, Path: ceph.BackingPrefix + tc.Pool + "/netsan"}
	l.openStore = func(lun iscsi.LUN) (backstore.Store, error) {
		return ceph.OpenBacking(c, lun.Path, lun.Size, lun.ReadOnly)
	}
	l.tgt = []string{"--bstype", "rbd", "-b", tc.Pool + "/tgt", "--bsopts", "conf=" + tc.Conf}
	l.server = tc.OSD.Process.Pid
	l.ceiling = func(w workload) (float64, float64, error) {
		return rbdBench(tc, tc.Pool+"/ceiling", w, size)
	}
	return l, nil
}

var rbdBenchTotal = regexp.MustCompile(`elapsed:\s+(\d+)\s+ops:\s+(\d+)\s+ops/sec:\s+([0-9.]+)\s+bytes/sec:\s+([0-9.]+)`)

// rbdBench runs `rbd bench` with the workload's size, depth and pattern.
func rbdBench(tc *cephtest.Cluster, image string, w workload, size int64) (float64, float64, error) {
	io, pattern := "read", "seq"
	if w.write {
		io = "write"
	}
	if w.random {
		pattern = "rand"
	}
	total := min(size, int64(w.size)*100000)
	out, err := tc.Rbd("bench", "--io-type", io, "--io-size", strconv.Itoa(w.size), "--io-threads", strconv.Itoa(w.depth),
		"--io-total", strconv.FormatInt(total, 10), "--io-pattern", pattern, image)
	if err != nil {
		return 0, 0, err
	}
	m := rbdBenchTotal.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, fmt.Errorf("rbd bench printed no total: %s", out)
	}
	ops, _ := strconv.ParseFloat(m[3], 64)
	bps, _ := strconv.ParseFloat(m[4], 64)
	return ops, bps, nil
}
