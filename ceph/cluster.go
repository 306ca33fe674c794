//go:build ceph

package ceph

import (
	"fmt"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"

	"github.com/netsan/netsan/iscsi/backstore"
)

// Built reports whether this netsan can reach a Ceph cluster.
const Built = true

// OpTimeout bounds one RADOS operation: an image whose OSDs stay away longer
// fails its I/O (the initiator sees an error and retries) instead of
// hanging its session forever. It is longer than an OSD restart or a short
// stall, so those are ridden out.
const OpTimeout = 30 * time.Second

// Cluster is a connection to a Ceph cluster, shared by every image opened
// through it.
type Cluster struct {
	cfg  Config
	conn *rados.Conn

	mu     sync.Mutex
	ioctxs map[string]*rados.IOContext // by pool, opened on first use
}

// Connect reads cfg.Conf and connects as client.cfg.ID. A cluster whose
// monitors do not answer within timeout is an error, not a hang.
func Connect(cfg Config, timeout time.Duration) (*Cluster, error) {
	if cfg.ID == "" {
		cfg.ID = "admin"
	}
	conn, err := rados.NewConnWithUser(cfg.ID)
	if err != nil {
		return nil, fmt.Errorf("ceph: %w", err)
	}
	if cfg.Conf != "" {
		if err := conn.ReadConfigFile(cfg.Conf); err != nil {
			conn.Shutdown()
			return nil, fmt.Errorf("ceph: reading %s: %w", cfg.Conf, err)
		}
	} else if err := conn.ReadDefaultConfigFile(); err != nil {
		conn.Shutdown()
		return nil, fmt.Errorf("ceph: reading the default ceph.conf: %w", err)
	}
	secs := strconv.Itoa(max(1, int(timeout.Seconds())))
	for k, v := range map[string]string{
		"client_mount_timeout": secs,
		"rados_mon_op_timeout": secs,
		"rados_osd_op_timeout": strconv.Itoa(int(OpTimeout.Seconds())),
		// No librbd write-back cache: once the initiator's first flush
		// turns it on, a write would be acknowledged from this process's
		// memory, and a crash of netsan (or the failover to another
		// gateway) would lose it. A file LUN's page cache survives a
		// crash of netsan; librbd's cache does not. (ceph-iscsi's gateways
		// turn it off for the same reason.)
		"rbd_cache": "false",
		// librbd starts an aio request in the calling thread instead of
		// handing it to a dispatch thread of its own: the hand-off woke
		// that thread for each request, 0.3-0.5 context switches per
		// 4 KiB read through iSCSI (BENCHMARKS.md). A request may then
		// wait in the caller (librados' throttle of requests in flight),
		// which holds up that goroutine only.
		"rbd_non_blocking_aio": "false",
	} {
		if err := conn.SetConfigOption(k, v); err != nil {
			conn.Shutdown()
			return nil, fmt.Errorf("ceph: %s: %w", k, err)
		}
	}
	// librados' threads write to sockets the cluster may have closed (a
	// client that was stopped past its sessions' timeouts, or fenced);
	// SIGPIPE's default action would kill netsan there instead of failing
	// the write, which librados handles.
	signal.Ignore(syscall.SIGPIPE)
	if err := conn.Connect(); err != nil {
		conn.Shutdown()
		return nil, fmt.Errorf("ceph: connecting as client.%s (%s): %w", cfg.ID, cfg.Conf, err)
	}
	return &Cluster{cfg: cfg, conn: conn, ioctxs: map[string]*rados.IOContext{}}, nil
}

// Close closes the pools and the connection. Images opened through c must
// be closed first.
func (c *Cluster) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, io := range c.ioctxs {
		io.Destroy()
	}
	c.ioctxs = nil
	c.conn.Shutdown()
}

// ioctx returns the I/O context of pool, opening it on first use.
func (c *Cluster) ioctx(pool string) (*rados.IOContext, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if io, ok := c.ioctxs[pool]; ok {
		return io, nil
	}
	io, err := c.conn.OpenIOContext(pool)
	if err != nil {
		return nil, fmt.Errorf("ceph: pool %s: %w", pool, err)
	}
	c.ioctxs[pool] = io
	return io, nil
}

// OpenImage opens an RBD image as a block store.
func (c *Cluster) OpenImage(name Name, readOnly bool) (backstore.Store, error) {
	io, err := c.ioctx(name.Pool)
	if err != nil {
		return nil, err
	}
	return openImage(io, name, readOnly)
}
