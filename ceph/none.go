//go:build !ceph

package ceph

import (
	"time"

	"github.com/netsan/netsan/iscsi/backstore"
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
