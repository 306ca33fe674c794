package lab

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Host is one diskless machine a boot server knows.
type Host struct {
	Name      string
	MAC       string
	IP        string
	Initiator string // iSCSI initiator IQN handed out as DHCP option 203
	Target    string // root target IQN
	Image     string // root image file
}

// ReferenceAvailable reports why the dnsmasq + tgtd reference cannot run.
func ReferenceAvailable() error {
	for _, t := range []string{"dnsmasq", "tgtd", "tgtadm"} {
		if _, err := exec.LookPath(t); err != nil {
			return fmt.Errorf("%s not installed (dnsmasq-base, tgt)", t)
		}
	}
	return nil
}

// StartReference serves hosts the way a dnsmasq (DHCP) + tgtd (iSCSI) setup
// would: iPXE gets option 17 root-path and 203, and sanboots it. It is the
// yardstick bench/boot measures netsan against and the proof that the
// golden image boots at all.
func (l *Lab) StartReference(ctx context.Context, hosts []Host) error {
	if err := ReferenceAvailable(); err != nil {
		return err
	}
	if _, err := l.StartTgtd(ctx, hosts); err != nil {
		return err
	}
	var conf strings.Builder
	// As people configure dnsmasq for PXE: DHCPv4 and TFTP, no enable-ra and
	// no IPv6 range, so it sends no router advertisement and iPXE waits out
	// its IPv6 router solicitations on the bridge's IPv6 LAN.
	fmt.Fprintf(&conf, `# dnsmasq as the lab's reference DHCP + TFTP server (no enable-ra: no RAs)
port=0
interface=%s
bind-interfaces
no-ping
log-dhcp
dhcp-authoritative
dhcp-leasefile=%s
dhcp-range=198.18.0.100,198.18.0.199,255.255.255.0,1h
dhcp-option=option:router,%s
enable-tftp
tftp-root=/usr/lib/ipxe
dhcp-userclass=set:ipxe,iPXE
dhcp-match=set:ipxe,175
dhcp-match=set:efi64,option:client-arch,7
dhcp-match=set:efi64,option:client-arch,9
dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe,,%[3]s
dhcp-boot=tag:!ipxe,tag:efi64,ipxe.efi,,%[3]s
dhcp-option=encap:175,8,1
dhcp-option=encap:175,176,1
`, Bridge, filepath.Join(l.Dir, "dnsmasq.leases"), ServerIP)
	for i, h := range hosts {
		tag := "h" + strconv.Itoa(i)
		fmt.Fprintf(&conf, "dhcp-host=%s,set:%s,%s,%s\n", h.MAC, tag, h.IP, h.Name)
		fmt.Fprintf(&conf, "dhcp-option=tag:%s,203,%s\n", tag, h.Initiator)
		fmt.Fprintf(&conf, "dhcp-option=tag:%s,tag:ipxe,option:root-path,iscsi:%s::3260:1:%s\n", tag, ServerIP, h.Target)
	}
	path := filepath.Join(l.Dir, "dnsmasq.conf")
	if err := os.WriteFile(path, []byte(conf.String()), 0o644); err != nil {
		return err
	}
	if _, err := l.Start("dnsmasq", "dnsmasq", "--keep-in-foreground", "--conf-file="+path,
		"--pid-file="+filepath.Join(l.Dir, "dnsmasq.pid"), "--log-facility=-"); err != nil {
		return err
	}
	return nil
}

// StartTgtd runs tgtd in the namespace with one target per host: the
// host's image as LUN 1 (tgt's LUN 0 is its controller), open to the
// host's initiator only. It returns the process, whose Stop kills it.
func (l *Lab) StartTgtd(ctx context.Context, hosts []Host) (*Proc, error) {
	// tgtd's control socket is host-wide (/var/run/tgtd/socket.N): its own
	// N, which tgtd wants below 32768.
	ctl := strconv.Itoa(1000 + rand.IntN(31000))
	l.onClose(func() {
		for _, f := range []string{"socket." + ctl, "socket." + ctl + ".lock"} {
			_ = os.Remove(filepath.Join("/var/run/tgtd", f))
		}
	})
	tgtd, err := l.Start("tgtd", "tgtd", "-f", "-C", ctl, "--iscsi", "portal="+ServerIP+":3260")
	if err != nil {
		return nil, err
	}
	// tgtd ignores SIGTERM.
	tgtd.stop = syscall.SIGKILL
	if err := l.WaitTCP(ctx, ServerIP+":3260", 10*time.Second); err != nil {
		return nil, fmt.Errorf("tgtd: %w: %s", err, tail(tgtd.Log, 1024))
	}
	tgtadm := func(args ...string) error {
		return run(ctx, "tgtadm", append([]string{"-C", ctl, "--lld", "iscsi"}, args...)...)
	}
	for i, h := range hosts {
		tid := strconv.Itoa(i + 1)
		// tgt's LUN 0 is its controller; the disk is LUN 1.
		if err := errors.Join(
			tgtadm("--op", "new", "--mode", "target", "--tid", tid, "-T", h.Target),
			tgtadm("--op", "new", "--mode", "logicalunit", "--tid", tid, "--lun", "1", "-b", h.Image),
			tgtadm("--op", "bind", "--mode", "target", "--tid", tid, "-Q", h.Initiator),
		); err != nil {
			return nil, fmt.Errorf("tgtd target %s: %w", h.Target, err)
		}
	}
	return tgtd, nil
}
