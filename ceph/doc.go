// Package ceph makes a Ceph cluster netsan's storage: RBD images as the
// block stores behind iSCSI LUNs, read and written through librbd's
// asynchronous API, and RADOS objects for the state that gateways taking
// over from one another share (DHCP leases, persistent reservations).
//
// Everything that needs librados and librbd (cgo) is behind the build tag
// "ceph" (with "pacific" for Debian 12's librbd: `make build-ceph`). A netsan
// built without it has the same API, whose Connect returns ErrNotBuilt.
package ceph

import (
	"errors"
	"fmt"
	"strings"

	"github.com/netsan/netsan/iscsi/backstore"
)

// ErrNotBuilt is what a netsan built without Ceph support returns where it
// is asked for a cluster or an RBD image.
var ErrNotBuilt = errors.New("this netsan was built without Ceph support: build it with `make build-ceph`")

// Config says how to reach the cluster: the [ceph] section of the inventory.
type Config struct {
	// Conf is the ceph.conf with the monitors (and keyring).
	Conf string
	// ID is the client id: "admin" for client.admin.
	ID string
	// Pool is the pool of an image name that names none.
	Pool string
}

// ObjectPrefix begins the name of every RADOS object netsan keeps state in
// (DHCP leases, persistent reservations), in the [ceph] pool.
const ObjectPrefix = "netsan."

// GoldenSnap is the snapshot of a golden image that host roots are cloned
// from; netsan makes and protects it on the first clone.
const GoldenSnap = "netsan-golden"

// Info is what Stat tells of an image.
type Info struct {
	// Size is the provisioned size in bytes.
	Size int64
	// Used is what the image holds itself, rounded to whole objects, as
	// `rbd du` reports it; a clone's unwritten parts are its parent's.
	Used int64
	// Parent is pool/image@snap of a clone's parent, "" for none.
	Parent string
}

// Name is an RBD image's place in the cluster.
type Name struct {
	Pool, Image string
}

func (n Name) String() string { return n.Pool + "/" + n.Image }

// BackingPrefix marks a backing that is an RBD image, "rbd:pool/image", as
// the inventory's Backing names it and an iSCSI LUN's Path carries it.
const BackingPrefix = "rbd:"

// ParseBacking returns the image a backing names, and false for a backing
// that is not an RBD image (a file or a device).
func ParseBacking(s string) (Name, bool) {
	rest, ok := strings.CutPrefix(s, BackingPrefix)
	if !ok {
		return Name{}, false
	}
	n, err := ParseName(rest, "")
	return n, err == nil
}

// OpenBacking opens a LUN's backing store: an RBD image ("rbd:pool/image")
// through c, else the file or block device at path (backstore.Open). A nil c
// opens files and devices and refuses RBD images.
func OpenBacking(c *Cluster, path string, size int64, readOnly bool) (backstore.Store, error) {
	n, ok := ParseBacking(path)
	switch {
	case !ok:
		return backstore.Open(path, size, readOnly)
	case c == nil:
		return nil, fmt.Errorf("%s: no Ceph cluster connected ([ceph])", path)
	}
	return c.OpenImage(n, readOnly)
}

// ParseName reads "pool/image", or "image" in defaultPool. RBD namespaces
// ("pool/ns/image") are not supported.
func ParseName(s, defaultPool string) (Name, error) {
	pool, image, found := strings.Cut(s, "/")
	if !found {
		pool, image = defaultPool, s
	}
	switch {
	case image == "":
		return Name{}, fmt.Errorf("rbd name %q: no image", s)
	case pool == "":
		return Name{}, fmt.Errorf("rbd name %q: no pool, and [ceph] pool is not set", s)
	case strings.Contains(image, "/"):
		return Name{}, fmt.Errorf("rbd name %q: want pool/image", s)
	case strings.ContainsAny(s, "@ \t"):
		return Name{}, fmt.Errorf("rbd name %q: '@' and spaces are not allowed", s)
	}
	return Name{Pool: pool, Image: image}, nil
}
