package inventory

import (
	"reflect"
	"strings"
)

// Changes says what a reload changes: serve logs it and skips a reload that
// changes nothing. Each service is handed the whole new inventory and works
// out for itself what concerns it.
type Changes struct {
	Server, DHCP, TFTP, HTTP, ISCSI, Ceph, Cluster, Images bool

	HostsAdded, HostsRemoved, HostsChanged       []string
	TargetsAdded, TargetsRemoved, TargetsChanged []string
}

// Diff compares two inventories.
func Diff(old, new *Inventory) Changes {
	c := Changes{
		Server:  !reflect.DeepEqual(old.Server, new.Server),
		DHCP:    !reflect.DeepEqual(old.DHCP, new.DHCP),
		TFTP:    !reflect.DeepEqual(old.TFTP, new.TFTP),
		HTTP:    !reflect.DeepEqual(old.HTTP, new.HTTP),
		ISCSI:   !reflect.DeepEqual(old.ISCSI, new.ISCSI),
		Ceph:    !reflect.DeepEqual(old.Ceph, new.Ceph),
		Cluster: !reflect.DeepEqual(old.Cluster, new.Cluster),
		Images:  !reflect.DeepEqual(old.Images, new.Images),
	}
	c.HostsAdded, c.HostsRemoved, c.HostsChanged = diffNamed(old.Hosts, new.Hosts, func(h Host) string { return h.Name })
	c.TargetsAdded, c.TargetsRemoved, c.TargetsChanged = diffNamed(old.Targets, new.Targets, func(t Target) string { return t.Name })
	return c
}

func diffNamed[T any](old, new []T, name func(T) string) (added, removed, changed []string) {
	before := make(map[string]T, len(old))
	for _, x := range old {
		before[name(x)] = x
	}
	after := make(map[string]bool, len(new))
	for _, x := range new {
		n := name(x)
		after[n] = true
		prev, ok := before[n]
		switch {
		case !ok:
			added = append(added, n)
		case !reflect.DeepEqual(prev, x):
			changed = append(changed, n)
		}
	}
	for _, x := range old {
		if !after[name(x)] {
			removed = append(removed, name(x))
		}
	}
	return added, removed, changed
}

// Hosts reports whether any host was added, removed or changed.
func (c Changes) Hosts() bool {
	return len(c.HostsAdded)+len(c.HostsRemoved)+len(c.HostsChanged) > 0
}

// Targets reports whether any data target was added, removed or changed.
func (c Changes) Targets() bool {
	return len(c.TargetsAdded)+len(c.TargetsRemoved)+len(c.TargetsChanged) > 0
}

// Empty reports whether nothing changed.
func (c Changes) Empty() bool {
	return !c.Server && !c.DHCP && !c.TFTP && !c.HTTP && !c.ISCSI && !c.Ceph && !c.Cluster && !c.Images && !c.Hosts() && !c.Targets()
}

// String is a one-line summary for the log, e.g.
// "sections: dhcp; hosts +node3 ~node1; targets -old".
func (c Changes) String() string {
	var parts []string
	var secs []string
	for _, s := range []struct {
		on   bool
		name string
	}{{c.Server, "server"}, {c.DHCP, "dhcp"}, {c.TFTP, "tftp"}, {c.HTTP, "http"}, {c.ISCSI, "iscsi"}, {c.Ceph, "ceph"}, {c.Cluster, "cluster"}, {c.Images, "images"}} {
		if s.on {
			secs = append(secs, s.name)
		}
	}
	if len(secs) > 0 {
		parts = append(parts, "sections: "+strings.Join(secs, ","))
	}
	list := func(what string, added, removed, changed []string) {
		var xs []string
		for _, n := range added {
			xs = append(xs, "+"+n)
		}
		for _, n := range removed {
			xs = append(xs, "-"+n)
		}
		for _, n := range changed {
			xs = append(xs, "~"+n)
		}
		if len(xs) > 0 {
			parts = append(parts, what+" "+strings.Join(xs, " "))
		}
	}
	list("hosts", c.HostsAdded, c.HostsRemoved, c.HostsChanged)
	list("targets", c.TargetsAdded, c.TargetsRemoved, c.TargetsChanged)
	if len(parts) == 0 {
		return "no changes"
	}
	return strings.Join(parts, "; ")
}
