package images

import (
	"fmt"

	"github.com/netsan/netsan/ceph"
)

// Cluster is the Ceph cluster that holds the inventory's RBD images, as
// this package uses it: *ceph.Cluster is one. Where the inventory names no
// RBD image it may be nil.
type Cluster interface {
	Exists(ceph.Name) (bool, error)
	// Stat tells the provisioned size, the bytes used as `rbd du` counts
	// them and a clone's parent.
	Stat(ceph.Name) (ceph.Info, error)
	Create(n ceph.Name, size int64) error
	// Clone makes root a copy-on-write clone of golden, grown to size.
	Clone(golden, root ceph.Name, size int64) error
	Remove(ceph.Name) error
	// Rename renames an image within its pool, open or not.
	Rename(n ceph.Name, to string) error
}

// rbdName parses an inventory rbd value (pool/image after Load), refusing
// it where no cluster is connected.
func rbdName(cl Cluster, rbd string) (ceph.Name, error) {
	if cl == nil {
		return ceph.Name{}, fmt.Errorf("rbd %s: no Ceph cluster connected ([ceph])", rbd)
	}
	return ceph.ParseName(rbd, "")
}

// RBDExists reports whether the RBD image rbd (an inventory rbd value) is
// there.
func RBDExists(cl Cluster, rbd string) (bool, error) {
	n, err := rbdName(cl, rbd)
	if err != nil {
		return false, err
	}
	return cl.Exists(n)
}

// StatRBD tells what the cluster knows of the RBD image rbd, for image
// list.
func StatRBD(cl Cluster, rbd string) (ceph.Info, error) {
	n, err := rbdName(cl, rbd)
	if err != nil {
		return ceph.Info{}, err
	}
	return cl.Stat(n)
}
