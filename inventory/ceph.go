package inventory

import (
	"fmt"
	"regexp"
	"strings"
)

// Ceph is the [ceph] section: the cluster that holds RBD images.
type Ceph struct {
	Conf string `toml:"conf"` // default /etc/ceph/ceph.conf; relative to the inventory's directory
	ID   string `toml:"id"`   // client id, default "admin"
	Pool string `toml:"pool"` // pool of an rbd name that names none, default "rbd"
}

// RBD name parts: Ceph allows more in a pool or image name, but these are
// what a person types and what stays unambiguous in "pool/image" and in
// `rbd` commands.
var rbdPartRE = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]*$`)

// CephUse is the first place the file asks for Ceph ([ceph] or an rbd key),
// for a netsan built without Ceph support to point at, its Message naming
// what is there; nil when it asks for none.
func (inv *Inventory) CephUse() *Problem { return inv.cephUse }

// UsesCeph reports whether any image, root or LUN is an RBD image.
func (inv *Inventory) UsesCeph() bool { return inv.cephUse != nil }

func (v *validator) cephDefaults() {
	c := v.inv.Ceph
	if c == nil {
		return
	}
	if c.Conf == "" {
		c.Conf = "/etc/ceph/ceph.conf"
	}
	if c.ID == "" {
		c.ID = "admin"
	}
	if c.Pool == "" {
		c.Pool = "rbd"
	}
}

// rbd validates an rbd name at path and returns it as pool/image. The first
// rbd key, or [ceph] itself, is remembered as the inventory's use of Ceph.
func (v *validator) rbd(path, name string) string {
	if name == "" {
		return ""
	}
	v.useCeph(path, fmt.Sprintf("rbd = %q", name))
	if v.inv.Ceph == nil {
		v.errorf(path, "rbd %q needs a [ceph] section (the cluster to find it in)", name)
		return name
	}
	pool, image, found := strings.Cut(name, "/")
	if !found {
		pool, image = v.inv.Ceph.Pool, name
	}
	if !rbdPartRE.MatchString(pool) || !rbdPartRE.MatchString(image) {
		v.errorf(path, "rbd %q: want pool/image or image (letters, digits, '_', '.', '-')", name)
		return name
	}
	return pool + "/" + image
}

// useCeph remembers the earliest place in the file that asks for Ceph; what
// names it as the person wrote it.
func (v *validator) useCeph(path, what string) {
	p := &Problem{File: v.file, Pos: v.at(path), Message: what}
	if u := v.inv.cephUse; u == nil || p.Pos.Line < u.Pos.Line || p.Pos.Line == u.Pos.Line && p.Pos.Col < u.Pos.Col {
		v.inv.cephUse = p
	}
}

// backing checks that exactly one of a root's or LUN's backings is given.
func (v *validator) backing(path, what, image, device, rbd string) {
	v.shared(path, what, rbd)
	n := 0
	for _, s := range []string{image, device, rbd} {
		if s != "" {
			n++
		}
	}
	switch {
	case n > 1:
		v.errorf(path, "%s has more than one of image, device and rbd; choose one", what)
	case n == 0:
		v.errorf(path, "%s needs an image, a device or an rbd", what)
	}
}
