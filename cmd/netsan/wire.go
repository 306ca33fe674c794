package main

import (
	"context"
	"path/filepath"
	"strconv"

	"go.uber.org/zap"

	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/iscsi"
)

// buildServices makes one service per section the inventory enables.
func buildServices(inv *inventory.Inventory, log *zap.Logger) ([]namedService, error) {
	var out []namedService
	add := func(on bool, name string, svc service) {
		if on {
			out = append(out, namedService{name, svc})
		}
	}
	add(inv.DHCP.On(), "dhcp", pending{"dhcp", log})
	add(inv.TFTP.On(), "tftp", pending{"tftp", log})
	add(inv.HTTP.On(), "http", pending{"http", log})
	add(inv.ISCSI.On(), "iscsi", pending{"iscsi", log})
	return out, nil
}

// pending stands in for a service whose package has not landed yet: the
// lifecycle around it is real, the protocol is not.
type pending struct {
	name string
	log  *zap.Logger
}

func (p pending) Serve(ctx context.Context) error {
	p.log.Warn("not implemented yet", zap.String("service", p.name))
	<-ctx.Done()
	return nil
}

func (p pending) Reload(*inventory.Inventory) error { return nil }

// iscsiConfig is the iSCSI target's view of the inventory: each host with a
// root gets target base_iqn:name with its root as LUN 0, admitting only that
// host's initiator (and its CHAP); each [[target]] keeps its LUNs and ACLs.
func iscsiConfig(inv *inventory.Inventory) iscsi.Config {
	cfg := iscsi.Config{
		Listen:        inv.ISCSI.Listen,
		DiscoveryCHAP: chap(inv.ISCSI.DiscoveryCHAP),
		MaxSessions:   inv.ISCSI.MaxSessions,
		StateDir:      filepath.Join(inv.Server.DataDir, "iscsi"),
	}
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		if h.Root == nil {
			continue
		}
		cfg.Targets = append(cfg.Targets, iscsi.Target{
			IQN:  inv.TargetIQN(h),
			LUNs: []iscsi.LUN{{Number: 0, Path: h.Root.Path(), Size: h.Root.Size.Bytes}},
			ACL:  []iscsi.ACL{{Initiator: inv.InitiatorIQN(h), CHAP: chap(h.CHAP)}},
		})
	}
	for i := range inv.Targets {
		t := &inv.Targets[i]
		it := iscsi.Target{IQN: inv.DataTargetIQN(t)}
		for _, l := range t.LUNs {
			it.LUNs = append(it.LUNs, iscsi.LUN{Number: uint64(l.LUN), Path: l.Path(), Size: l.Size.Bytes, ReadOnly: l.ReadOnly})
		}
		for _, a := range t.ACL {
			acl := iscsi.ACL{Initiator: a.Initiator, WriteProtect: a.WriteProtect, CHAP: chap(a.CHAP)}
			if a.Map != nil {
				acl.Map = make(map[uint64]uint64, len(a.Map))
				for k, tl := range a.Map {
					n, _ := strconv.ParseUint(k, 10, 64) // validated by inventory
					acl.Map[n] = uint64(tl)
				}
			}
			it.ACL = append(it.ACL, acl)
		}
		cfg.Targets = append(cfg.Targets, it)
	}
	return cfg
}

func chap(c *inventory.CHAP) *iscsi.CHAP {
	if c == nil {
		return nil
	}
	return &iscsi.CHAP{User: c.User, Secret: c.Secret, MutualUser: c.MutualUser, MutualSecret: c.MutualSecret}
}
