//go:build ceph

package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/ceph/cephtest"
	"github.com/netsan/netsan/dhcpd"
	"github.com/netsan/netsan/iscsi/iscsitest"
	"github.com/netsan/netsan/iscsi/scsi"
	"github.com/netsan/netsan/netsantest"
)

// TestCephClusterState: with [cluster], the DHCP server and the iSCSI
// target that serve builds continue the lease and the registration that
// the gateway which led before left in the [ceph] pool (netsan.leases,
// netsan.pr.<target IQN>-lun0); without [cluster] they keep to data_dir's
// files, as on one box.
func TestCephClusterState(t *testing.T) {
	tc := cephtest.Start(t, cephtest.Options{})
	tc.MustRbd(t, "create", "--size", "16M", "rbd/data")
	dir := t.TempDir()
	const base = "iqn.2026-11.example.test"
	target := base + ":data"

	lease := dhcpd.Lease{IP: netip.MustParseAddr("198.18.0.105"), MAC: "52:54:00:00:00:99", State: dhcpd.StateBound,
		Expires: time.Now().Add(time.Hour)}
	b, err := json.Marshal(lease)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := tc.Rados("setomapval", ceph.ObjectPrefix+"leases", lease.IP.String(), string(b)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	const key = 0xabc
	b, err = json.Marshal(scsi.PRState{Generation: 1, Regs: []scsi.Registration{
		{Nexus: scsi.Nexus{InitiatorName: base + ":node9", ISID: [6]byte{0x80, 0, 0, 0, 0, 9}, TargetName: target, TPGT: 1}, Key: key}}})
	if err != nil {
		t.Fatal(err)
	}
	pr := filepath.Join(dir, "pr.json")
	writeFile(t, pr, string(b))
	if out, err := tc.Rados("put", ceph.ObjectPrefix+"pr."+target+"-lun0", pr); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}

	for _, clustered := range []bool{true, false} {
		t.Run(fmt.Sprintf("cluster=%v", clustered), func(t *testing.T) {
			iscsiPort := netsantest.FreePort(t, "tcp")
			body := fmt.Sprintf(`[server]
address  = "198.18.0.1"
data_dir = %q
[dhcp]
subnet = "198.18.0.0/24"
range  = ["198.18.0.100", "198.18.0.110"]
[tftp]
enabled = false
[iscsi]
enabled  = %v
listen   = ["127.0.0.1:%d"]
base_iqn = %q
[ceph]
conf = %q
[[target]]
name = "data"
luns = [ { lun = 0, rbd = "data" } ]
`, t.TempDir(), clustered, iscsiPort, base, tc.Conf)
			if clustered {
				body += "[cluster]\ninterface = \"lo\"\n"
			}
			path := filepath.Join(t.TempDir(), "netsan.toml")
			writeFile(t, path, body)
			inv, ps, err := loadInventory(path)
			if err != nil {
				t.Fatalf("%v %v", ps, err)
			}
			c, err := connectCeph(inv)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { closeCeph(c) })
			svcs, err := buildServices(inv, c, zap.NewNop(), prometheus.NewRegistry(), nil, nil)
			if err != nil {
				t.Fatal(err)
			}
			var d *dhcpd.Server
			for _, s := range svcs {
				switch svc := s.svc.(type) {
				case *dhcpd.Server:
					d = svc
				case iscsiService:
					netsantest.Serve(t, 30*time.Second, svc.Serve)
				}
			}
			has := slices.ContainsFunc(d.Leases(), func(l dhcpd.Lease) bool { return l.IP == lease.IP && l.MAC == lease.MAC })
			if has != clustered {
				t.Errorf("the DHCP server knows the lease from Ceph: %v; want %v", has, clustered)
			}
			if !clustered {
				return
			}
			if keys := readKeys(t, fmt.Sprintf("127.0.0.1:%d", iscsiPort), base+":node1", target); !slices.Equal(keys, []uint64{key}) {
				t.Errorf("READ KEYS: %x, want the registration in Ceph, %x", keys, key)
			}
		})
	}
}

// readKeys logs in to target as initiator and returns the reservation
// keys PERSISTENT RESERVE IN reports of LUN 0.
func readKeys(t *testing.T, addr, initiator, target string) []uint64 {
	t.Helper()
	var in *iscsitest.Initiator
	netsantest.WaitFor(t, "the iSCSI portal", 10*time.Second, func() bool {
		var err error
		in, err = iscsitest.Dial(addr)
		return err == nil
	})
	defer in.Close()
	if _, err := in.Login([6]byte{0x80, 0, 0, 0, 0, 1}, 0, iscsitest.NormalKeys(initiator, target)...); err != nil {
		t.Fatalf("login: %v", err)
	}
	if res, err := in.CommandPastUA(0, iscsitest.TUR(), nil, 0); err != nil || res.Status != 0 {
		t.Fatalf("TEST UNIT READY: %v, status %#x", err, res.Status)
	}
	res, err := in.Command(0, iscsitest.PRIn(iscsitest.PRInReadKeys, 256), nil, 256)
	if err != nil || res.Status != 0 || len(res.Data) < 8 {
		t.Fatalf("READ KEYS: %v, status %#x sense %x", err, res.Status, res.Sense)
	}
	var keys []uint64
	for d := res.Data[8 : 8+binary.BigEndian.Uint32(res.Data[4:])]; len(d) >= 8; d = d[8:] {
		keys = append(keys, binary.BigEndian.Uint64(d))
	}
	return keys
}
