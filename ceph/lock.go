//go:build ceph

package ceph

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"syscall"
	"time"

	"github.com/ceph/go-ceph/rados"
)

// What leadership among gateways (package cluster) needs of the cluster:
// an advisory lock with a lease on a RADOS object, who holds it, an omap
// for the gateways' records, this client's address, and fencing another
// client by blocklisting its address. All of it lives in the pool of
// Config.Pool.

// RADOS lock flags (librados.h): MUST_RENEW extends a lock this client
// holds and fails with ENOENT where it no longer does; MAY_RENEW takes a
// free lock or extends ours.
const (
	lockMayRenew  byte = 1 << 0
	lockMustRenew byte = 1 << 1
)

// poolIOContext is the I/O context of the pool a name without one goes to.
func (c *Cluster) poolIOContext() (*rados.IOContext, error) {
	if c.cfg.Pool == "" {
		return nil, errors.New("ceph: [ceph] pool is not set")
	}
	return c.ioctx(c.cfg.Pool)
}

// LockExclusive takes the exclusive lock name on object oid (creating the
// object) for lease, as this client with cookie; the lock lapses lease
// after the OSD granted it unless renewed. With renew it only extends a
// lock this client holds with cookie, and reports false where it no longer
// holds it (it lapsed, or was broken). Without, it takes the lock if it is
// free or lapsed, extends it if ours, and reports false if another holds it.
func (c *Cluster) LockExclusive(oid, name, cookie string, lease time.Duration, renew bool) (bool, error) {
	io, err := c.poolIOContext()
	if err != nil {
		return false, err
	}
	flags := lockMayRenew
	if renew {
		flags = lockMustRenew
	}
	ret, err := io.LockExclusive(oid, name, cookie, cookie, lease, &flags)
	switch {
	case renew && errors.Is(err, rados.ErrNotFound):
		return false, nil
	case err != nil:
		return false, fmt.Errorf("ceph: lock %s on %s: %w", name, oid, errnoOf(err))
	case ret == -int(syscall.EBUSY):
		return false, nil
	}
	return true, nil // 0, or EEXIST: ours already
}

// Unlock releases the lock this client holds with cookie; one it does not
// hold (any more) is no error.
func (c *Cluster) Unlock(oid, name, cookie string) error {
	io, err := c.poolIOContext()
	if err != nil {
		return err
	}
	if _, err := io.Unlock(oid, name, cookie); err != nil {
		return fmt.Errorf("ceph: unlock %s on %s: %w", name, oid, errnoOf(err))
	}
	return nil
}

// LockHolder tells who holds the exclusive lock name on oid: its cookie
// and its client's address (what Blocklist takes); "" for both when
// nobody does. A lapsed lock is held by nobody.
func (c *Cluster) LockHolder(oid, name string) (cookie, addr string, err error) {
	io, err := c.poolIOContext()
	if err != nil {
		return "", "", err
	}
	info, err := io.ListLockers(oid, name)
	if errors.Is(err, rados.ErrNotFound) {
		return "", "", nil // no object yet, so no lock
	}
	if err != nil {
		return "", "", fmt.Errorf("ceph: lockers of %s on %s: %w", name, oid, errnoOf(err))
	}
	if info.NumLockers == 0 || len(info.Cookies) == 0 || len(info.Addrs) == 0 {
		return "", "", nil
	}
	return info.Cookies[0], clientAddr(info.Addrs[0]), nil
}

// clientAddr is a client's address without the messenger type that
// lockers carry ("v1:198.18.0.2:0/35619142") and the client's own view of
// it does not, so that the two compare equal; Blocklist takes either.
func clientAddr(a string) string {
	for _, p := range []string{"any:", "v1:", "v2:"} {
		if rest, ok := strings.CutPrefix(a, p); ok {
			return rest
		}
	}
	return a
}

// ClientAddr is this connection's address as the cluster knows it (as
// LockHolder reports it and Blocklist takes it), e.g.
// "198.18.0.2:0/3561914203": a new connection from the same host has
// another.
func (c *Cluster) ClientAddr() (string, error) {
	a, err := c.conn.GetAddrs()
	if err != nil {
		return "", fmt.Errorf("ceph: client address: %w", errnoOf(err))
	}
	return clientAddr(a), nil
}

// Blocklist fences the client at addr: the OSDs refuse its operations
// from the OSD map that carries the entry on (they fail with
// EBLOCKLISTED, which is syscall.ESHUTDOWN), and librbd may break the
// RBD exclusive locks it held. It returns once this client has that map,
// so what it does next is ordered after the fence. The entry expires after
// Ceph's default hour, long after the fenced process has gone: a restarted
// gateway connects with a new address.
func (c *Cluster) Blocklist(addr string) error {
	cmd, err := json.Marshal(map[string]string{
		"prefix": "osd blocklist", "blocklistop": "add", "addr": addr,
	})
	if err != nil {
		return err
	}
	if _, status, err := c.conn.MonCommand(cmd); err != nil {
		return fmt.Errorf("ceph: osd blocklist add %s: %w (%s)", addr, errnoOf(err), status)
	}
	if err := c.conn.WaitForLatestOSDMap(); err != nil {
		return fmt.Errorf("ceph: osd map after blocklisting %s: %w", addr, errnoOf(err))
	}
	return nil
}

// SetOmap sets keys of object oid's omap (creating the object).
func (c *Cluster) SetOmap(oid string, pairs map[string][]byte) error {
	io, err := c.poolIOContext()
	if err != nil {
		return err
	}
	if err := io.SetOmap(oid, pairs); err != nil {
		return fmt.Errorf("ceph: omap of %s: %w", oid, errnoOf(err))
	}
	return nil
}

// Omap reads every key of object oid's omap; an object that is not there
// has none.
func (c *Cluster) Omap(oid string) (map[string][]byte, error) {
	io, err := c.poolIOContext()
	if err != nil {
		return nil, err
	}
	m, err := io.GetAllOmapValues(oid, "", "", 256)
	if errors.Is(err, rados.ErrNotFound) {
		return map[string][]byte{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("ceph: omap of %s: %w", oid, errnoOf(err))
	}
	return m, nil
}
