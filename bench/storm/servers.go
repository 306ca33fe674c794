package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/netsan/netsan/lab"
	"github.com/netsan/netsan/netsantest"
)

// Servers a storm runs against.
const (
	Netsan    = "netsan"
	Reference = "dnsmasq + tftpd-hpa + tgtd"
)

// outcome is one storm against one server.
type outcome struct {
	server string
	cfg    Config
	nodes  []node
	res    []result
	cpu    time.Duration // the servers' user + system time
	hwm    int64         // the servers' peak RSS (VmHWM), summed, bytes
	// drops is UDP datagrams the server namespace's kernel dropped for a
	// full socket buffer (RcvbufErrors): DHCP or TFTP requests lost.
	drops int64
}

// storm boots cfg.Nodes nodes at once against server, each from a fresh
// clone of golden on d, and measures it. bin is the netsan binary; logs go
// to dir.
func storm(ctx context.Context, server, bin, golden string, d *disk, dir string, cfg Config) (*outcome, error) {
	ns := nodes(cfg.Nodes)
	if err := clones(golden, filepath.Join(d.mnt, "roots"), ns); err != nil {
		return nil, err
	}
	if cfg.serve != nil {
		cfg.serve(ns)
	}
	// The servers' CPU time is their group's: in.tftpd's children are
	// reaped by the kernel, never by in.tftpd, so they reach no cutime.
	group, err := lab.NewCPUGroup("netsan-bench-storm")
	if err != nil {
		fmt.Fprintf(os.Stderr, "bench/storm: %v; CPU time from /proc (without in.tftpd's children)\n", err)
	} else {
		defer group.Remove()
	}
	l, err := lab.NewWide(ctx, dir, "storm")
	if err != nil {
		return nil, err
	}
	defer l.Close()
	cli, err := l.Client(ctx, "02:53:54:ff:ff:fe")
	if err != nil {
		return nil, err
	}
	// The nodes' addresses are the client namespace's, given before the
	// storm: each node checks its ACK names its own and connects from it.
	var batch strings.Builder
	fmt.Fprintf(&batch, "addr add %s dev eth0\n", clientIP)
	for _, n := range ns {
		fmt.Fprintf(&batch, "addr add %s/15 dev eth0\n", n.IP)
	}
	batchFile := filepath.Join(dir, "addresses.batch")
	if err := os.WriteFile(batchFile, []byte(batch.String()), 0o644); err != nil {
		return nil, err
	}
	if _, err := lab.RunIn(ctx, cli, "ip", "-batch", batchFile); err != nil {
		return nil, err
	}

	var procs []*lab.Proc
	switch server {
	case Netsan:
		inv := lab.Inventory{DataDir: d.mnt, BaseIQN: baseIQN, Subnet: lab.WideSubnet}
		for _, n := range ns {
			h := n.Host
			h.Image = filepath.Join("roots", filepath.Base(n.Image))
			inv.Hosts = append(inv.Hosts, lab.NetsanHost{Host: h, Boot: "san"})
		}
		p, err := l.StartNetsan(ctx, bin, inv)
		if err != nil {
			return nil, err
		}
		procs = append(procs, p)
	case Reference:
		if procs, err = startReference(ctx, l, ns, d.mnt); err != nil {
			return nil, err
		}
	default:
		return nil, fmt.Errorf("no server %q", server)
	}

	fi, err := os.Stat(filepath.Join(ipxeDir, loader))
	if err != nil {
		return nil, err
	}
	dhcp, err := netsantest.ListenDHCP(cli, "eth0")
	if err != nil {
		return nil, err
	}
	defer dhcp.Close()
	c := &client{ns: cli, dhcp: dhcp, ops: pattern(cfg), loader: fi.Size()}
	// Ready when the loader comes by TFTP (bounded): the link is up and
	// the servers have started.
	if err := c.ready(ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", server, err)
	}
	var before time.Duration
	if group != nil {
		for _, p := range procs {
			if err := group.Add(p.Pid()); err != nil {
				return nil, fmt.Errorf("%s: %w", p.Name, err)
			}
		}
		before = group.Usage()
	}
	sctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	out := &outcome{server: server, cfg: cfg, nodes: ns, res: c.run(sctx, ns)}
	for _, p := range procs {
		cpu, hwm, err := usage(p.Pid())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p.Name, err)
		}
		out.cpu += cpu
		out.hwm += hwm
	}
	if group != nil {
		out.cpu = group.Usage() - before
	}
	out.drops, err = netsantest.UDPRcvbufErrors(l.Name)
	return out, err
}

// ready fetches the loader by TFTP until it comes (at most 20 s).
func (c *client) ready(ctx context.Context) error {
	var err error
	for range 40 {
		var b []byte
		if b, err = c.tftp(node{}, lab.ServerIP, loader); err == nil && int64(len(b)) == c.loader {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	return fmt.Errorf("no %s by TFTP: %v", loader, err)
}

// startReference serves the nodes as a dnsmasq + tftpd-hpa + tgtd setup
// would: dnsmasq gives the PXE ROM undionly.kpxe, and iPXE its per-host
// script on tftpd-hpa with the root-path and initiator (option 203) the
// script's sanboot uses; tgtd has a target per host, its clone as LUN 1
// behind an initiator ACL. The configuration is in the lab's directory
// (dnsmasq.conf, tftp/).
func startReference(ctx context.Context, l *lab.Lab, ns []node, dir string) ([]*lab.Proc, error) {
	if err := errors.Join(lab.ReferenceAvailable(), netsantest.Installed("in.tftpd")); err != nil {
		return nil, err
	}
	var hosts []lab.Host
	for _, n := range ns {
		hosts = append(hosts, n.Host)
	}
	tgtd, err := l.StartTgtd(ctx, hosts)
	if err != nil {
		return nil, err
	}
	root := filepath.Join(dir, "tftp")
	if err := os.MkdirAll(filepath.Join(root, "boot"), 0o755); err != nil {
		return nil, err
	}
	kpxe, err := os.ReadFile(filepath.Join(ipxeDir, loader))
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(root, loader), kpxe, 0o644); err != nil {
		return nil, err
	}
	var conf strings.Builder
	fmt.Fprintf(&conf, `# dnsmasq: DHCP only (tftpd-hpa serves the files), static leases
port=0
interface=%s
bind-interfaces
no-ping
dhcp-authoritative
dhcp-leasefile=%s
dhcp-lease-max=10000
dhcp-range=198.18.0.0,static,255.254.0.0,1h
dhcp-option=option:router,%s
dhcp-userclass=set:ipxe,iPXE
dhcp-match=set:ipxe,175
dhcp-boot=tag:!ipxe,%s,,%[3]s
dhcp-option=encap:175,8,1
dhcp-option=encap:175,176,1
`, lab.Bridge, filepath.Join(l.Dir, "dnsmasq.leases"), lab.ServerIP, loader)
	for i, n := range ns {
		tag := "h" + strconv.Itoa(i)
		script := "boot/" + strings.ReplaceAll(n.MAC, ":", "-") + ".ipxe"
		fmt.Fprintf(&conf, "dhcp-host=%s,set:%s,%s,%s\n", n.MAC, tag, n.IP, n.Name)
		fmt.Fprintf(&conf, "dhcp-option=tag:%s,203,%s\n", tag, n.Initiator)
		fmt.Fprintf(&conf, "dhcp-option=tag:%s,tag:ipxe,option:root-path,iscsi:%s::3260:1:%s\n", tag, lab.ServerIP, n.Target)
		fmt.Fprintf(&conf, "dhcp-boot=tag:ipxe,tag:%s,%s,,%s\n", tag, script, lab.ServerIP)
		body := fmt.Sprintf("#!ipxe\necho %s booting from SAN %s\nsanboot || shell\n", n.Name, n.Target)
		if err := os.WriteFile(filepath.Join(root, script), []byte(body), 0o644); err != nil {
			return nil, err
		}
	}
	path := filepath.Join(l.Dir, "dnsmasq.conf")
	if err := os.WriteFile(path, []byte(conf.String()), 0o644); err != nil {
		return nil, err
	}
	tftpd, err := l.Start("tftpd", "in.tftpd", "--foreground", "--ipv4", "--secure", "--address", lab.ServerIP+":69", root)
	if err != nil {
		return nil, err
	}
	dnsmasq, err := l.Start("dnsmasq", "dnsmasq", "--keep-in-foreground", "--conf-file="+path,
		"--pid-file="+filepath.Join(l.Dir, "dnsmasq.pid"), "--log-facility=-")
	if err != nil {
		return nil, err
	}
	return []*lab.Proc{tgtd, tftpd, dnsmasq}, nil
}

// usage is a process's CPU time (its own and its waited-for children's)
// and peak RSS.
func usage(pid int) (time.Duration, int64, error) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, 0, err
	}
	// After the parenthesised command: utime, stime, cutime, cstime are
	// the 12th to 15th fields (proc(5) 14 to 17), in clock ticks.
	_, rest, _ := strings.Cut(string(stat), ") ")
	f := strings.Fields(rest)
	if len(f) < 15 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: %q", pid, stat)
	}
	var ticks int64
	for _, s := range f[11:15] {
		n, _ := strconv.ParseInt(s, 10, 64)
		ticks += n
	}
	status, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0, err
	}
	var hwm int64
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			hwm, _ = strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			hwm <<= 10
		}
	}
	return time.Duration(ticks) * time.Second / 100, hwm, nil // USER_HZ is 100 on Linux
}
