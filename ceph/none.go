//go:build !ceph

package ceph

import (
	"time"

	"github.com/netsan/netsan/iscsi/backstore"
	"github.com/netsan/netsan/iscsi/scsi"
)

// Built reports whether this netsan can reach a Ceph cluster.
const Built = false

// Cluster is a connection to a Ceph cluster; without Ceph support there is
// none to be had.
type Cluster struct{}

// Connect returns ErrNotBuilt.
func Connect(Config, time.Duration) (*Cluster, error) { return nil, ErrNotBuilt }

// Close does nothing.
func (*Cluster) Close() {}

// OpenImage returns ErrNotBuilt.
func (*Cluster) OpenImage(Name, bool) (backstore.Store, error) { return nil, ErrNotBuilt }

// Exists returns ErrNotBuilt.
func (*Cluster) Exists(Name) (bool, error) { return false, ErrNotBuilt }

// Stat returns ErrNotBuilt.
func (*Cluster) Stat(Name) (Info, error) { return Info{}, ErrNotBuilt }

// Create returns ErrNotBuilt.
func (*Cluster) Create(Name, int64) error { return ErrNotBuilt }

// Clone returns ErrNotBuilt.
func (*Cluster) Clone(golden, root Name, size int64) error { return ErrNotBuilt }

// Remove returns ErrNotBuilt.
func (*Cluster) Remove(Name) error { return ErrNotBuilt }

// Rename returns ErrNotBuilt.
func (*Cluster) Rename(Name, string) error { return ErrNotBuilt }

// LockExclusive returns ErrNotBuilt.
func (*Cluster) LockExclusive(oid, name, cookie string, lease time.Duration, renew bool) (bool, error) {
	return false, ErrNotBuilt
}

// Unlock returns ErrNotBuilt.
func (*Cluster) Unlock(oid, name, cookie string) error { return ErrNotBuilt }

// LockHolder returns ErrNotBuilt.
func (*Cluster) LockHolder(oid, name string) (cookie, addr string, err error) {
	return "", "", ErrNotBuilt
}

// ClientAddr returns ErrNotBuilt.
func (*Cluster) ClientAddr() (string, error) { return "", ErrNotBuilt }

// Blocklist returns ErrNotBuilt.
func (*Cluster) Blocklist(addr string) error { return ErrNotBuilt }

// SetOmap returns ErrNotBuilt.
func (*Cluster) SetOmap(oid string, pairs map[string][]byte) error { return ErrNotBuilt }

// Omap returns ErrNotBuilt.
func (*Cluster) Omap(oid string) (map[string][]byte, error) { return nil, ErrNotBuilt }

// Records is the omap of a RADOS object; without Ceph support there is none.
type Records struct{}

// Records returns ErrNotBuilt.
func (*Cluster) Records(string) (*Records, error) { return nil, ErrNotBuilt }

// Load returns ErrNotBuilt.
func (*Records) Load() (map[string][]byte, error) { return nil, ErrNotBuilt }

// Save returns ErrNotBuilt.
func (*Records) Save(map[string][]byte) error { return ErrNotBuilt }

// ReservationStore returns ErrNotBuilt.
func (*Cluster) ReservationStore() (scsi.ReservationStore, error) { return nil, ErrNotBuilt }
