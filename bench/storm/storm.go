package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
	"github.com/pin/tftp/v3"

	"github.com/netsan/netsan/iscsi/iscsitest"
	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/lab"
	"github.com/netsan/netsan/netsantest"
)

const (
	baseIQN  = "iqn.2026-11.example.storm"
	ipxeDir  = "/usr/lib/ipxe"
	loader   = "undionly.kpxe"
	clientIP = "198.19.255.254/15" // the client namespace's own address
	// The image's last writeArea bytes take the nodes' writes (a journal);
	// reads stay below it.
	writeArea = 64 << 20
)

// Config is one storm's shape.
type Config struct {
	Nodes    int
	ReadMiB  int // per node, the random 4 KiB reads included
	Random   int // 4 KiB random reads per node
	WriteMiB int // per node, in 64 KiB writes with a SYNCHRONIZE CACHE every 512 KiB
	ImageMiB int // the golden image
	Timeout  time.Duration
	// serve, when set, changes which image each node's server is given
	// (after the clones are made): tests give a node another's.
	serve func(ns []node)
}

// node is one simulated machine.
type node struct {
	lab.Host
	mac   net.HardwareAddr
	ip    netip.Addr
	index int
	// root is its own clone; Image is what its server serves it, the same
	// unless a test's Config.serve changed it.
	root string
}

func nodes(n int) []node {
	out := make([]node, n)
	for i := range out {
		name := fmt.Sprintf("node%04d", i+1)
		ip := netip.AddrFrom4([4]byte{198, 18, byte(4 + i/250), byte(1 + i%250)})
		mac := net.HardwareAddr{0x02, 0x53, 0x54, 0x00, byte(i >> 8), byte(i)}
		out[i] = node{Host: lab.Host{Name: name, MAC: mac.String(), IP: ip.String(),
			Initiator: baseIQN + ":" + name, Target: baseIQN + ":root." + name}, mac: mac, ip: ip, index: i}
	}
	return out
}

// stamp is what the first 512 bytes of node i's root hold (its "partition
// table"), so that a node served another's root reads the wrong bytes.
func stamp(name string) []byte {
	b := make([]byte, 512)
	copy(b, "netsan storm root of "+name+"\n")
	return b
}

// op is one SCSI command of the boot pattern.
type op struct {
	write bool
	sync  bool // SYNCHRONIZE CACHE after this write
	off   int64
	n     int
}

// pattern is the I/O a booting node does, the same for every node (they
// boot the same image): the stamp sector first, as firmware reads the
// partition table; then, in a shuffled order, sequential runs of 128 KiB
// reads (files read whole by readahead, 128 KiB to 2 MiB each) and
// cfg.Random 4 KiB reads at random places (metadata, the libraries' pages
// a process touches), cfg.ReadMiB in all; then cfg.WriteMiB of 64 KiB
// writes into the image's last 64 MiB with a SYNCHRONIZE CACHE after
// every 512 KiB and the last, as a journal commits.
func pattern(cfg Config) []op {
	rng := rand.New(rand.NewPCG(18, 500))
	size := int64(cfg.ImageMiB) << 20
	readable := size - writeArea
	var chunks [][]op
	for range cfg.Random {
		chunks = append(chunks, []op{{off: rng.Int64N(readable/4096) * 4096, n: 4096}})
	}
	seq := int64(cfg.ReadMiB)<<20 - int64(cfg.Random)*4096 - 4096
	for seq > 0 {
		run := int64(1+rng.IntN(16)) << 17
		run = min(run, (seq+(128<<10)-1)&^(128<<10-1))
		start := rng.Int64N((readable-run)>>17) << 17
		var c []op
		for o := int64(0); o < run; o += 128 << 10 {
			c = append(c, op{off: start + o, n: 128 << 10})
		}
		chunks = append(chunks, c)
		seq -= run
	}
	rng.Shuffle(len(chunks), func(i, j int) { chunks[i], chunks[j] = chunks[j], chunks[i] })
	ops := []op{{off: 0, n: 4096}}
	for _, c := range chunks {
		ops = append(ops, c...)
	}
	written := int64(0)
	for w := int64(0); w < int64(cfg.WriteMiB)<<20; w += 64 << 10 {
		written += 64 << 10
		ops = append(ops, op{write: true, off: size - writeArea + w, n: 64 << 10, sync: written%(512<<10) == 0})
	}
	if len(ops) > 0 {
		ops[len(ops)-1].sync = ops[len(ops)-1].write
	}
	return ops
}

// writeData is what node name writes at offset off: each 512-byte sector
// names it and its offset, so that a write that lands elsewhere, or
// another node's, shows.
func writeData(name string, off int64, n int) []byte {
	b := make([]byte, n)
	for o := 0; o < n; o += 512 {
		copy(b[o:min(o+512, n)], fmt.Sprintf("%s wrote this sector at %d\n", name, off+int64(o)))
	}
	return b
}

// golden writes the golden image: pseudo-random bytes, so that a read
// from the wrong place does not match by chance.
func golden(path string, mib int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	rng := rand.NewChaCha8([32]byte{18})
	buf := make([]byte, 1<<20)
	for range mib {
		rng.Read(buf)
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	return f.Close()
}

// disk is an XFS file system on a loop device, where reflink clones of
// the golden image cost no space.
type disk struct {
	dir, img, mnt string
}

func makeDisk(ctx context.Context, dir string, gib int) (*disk, error) {
	if err := netsantest.Installed("mkfs.xfs", "mount", "umount"); err != nil {
		return nil, err
	}
	d := &disk{dir: dir, img: filepath.Join(dir, "xfs.img"), mnt: filepath.Join(dir, "mnt")}
	f, err := os.Create(d.img)
	if err == nil {
		err = errors.Join(f.Truncate(int64(gib)<<30), f.Close())
	}
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(d.mnt, 0o755); err != nil {
		return nil, err
	}
	for _, argv := range [][]string{
		{"mkfs.xfs", "-q", "-m", "reflink=1", d.img},
		{"mount", "-o", "loop", d.img, d.mnt},
	} {
		if out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput(); err != nil {
			os.Remove(d.img)
			return nil, fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, bytes.TrimSpace(out))
		}
	}
	// tftpd-hpa drops to nobody.
	return d, os.Chmod(d.mnt, 0o755)
}

// close unmounts the file system, which frees its loop device.
func (d *disk) close() error {
	out, err := exec.Command("umount", d.mnt).CombinedOutput()
	if err != nil {
		return fmt.Errorf("umount %s: %w: %s", d.mnt, err, bytes.TrimSpace(out))
	}
	return os.Remove(d.img)
}

// clones gives each node a fresh reflink clone of golden under dir,
// stamped with its name, and sets its Image.
func clones(golden, dir string, ns []node) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	for i := range ns {
		ns[i].root = filepath.Join(dir, ns[i].Name+".img")
		ns[i].Image = ns[i].root
		if err := lab.Clone(golden, ns[i].root); err != nil {
			return err
		}
		f, err := os.OpenFile(ns[i].root, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		_, err = f.WriteAt(stamp(ns[i].Name), 0)
		if err := errors.Join(err, f.Close()); err != nil {
			return fmt.Errorf("stamp %s: %w", ns[i].root, err)
		}
	}
	return nil
}

// Steps of a boot, in order; a node's result has the time at which it
// finished each.
var steps = []string{"PXE DHCP", "TFTP " + loader, "iPXE DHCP", "script", "iSCSI login", "root read", "writes"}

const (
	stepRoot   = 5
	stepWrites = 6
)

// result is one node's boot.
type result struct {
	at  [7]time.Duration // since the storm began, per step
	crc uint32           // of every byte read, in order
	err error
}

// client is what the nodes share: the namespace they run in and its DHCP
// socket.
type client struct {
	ns     string
	dhcp   *netsantest.DHCPClients
	ops    []op
	loader int64 // undionly.kpxe's size
}

// run boots every node at once and keeps its session until all are done;
// then each checks its session still works and logs out.
func (c *client) run(ctx context.Context, ns []node) []result {
	res := make([]result, len(ns))
	start := make(chan struct{})
	booted := make(chan struct{})
	var t0 time.Time
	var all, up sync.WaitGroup
	for i := range ns {
		all.Add(1)
		up.Add(1)
		go func() {
			defer all.Done()
			<-start
			in, lun, err := c.boot(ctx, ns[i], t0, &res[i])
			up.Done()
			if err != nil {
				res[i].err = fmt.Errorf("%s: %w", ns[i].Name, err)
				return
			}
			defer in.Close()
			if err := hold(ctx, in, lun, booted); err != nil {
				res[i].err = fmt.Errorf("%s: logged in: %w", ns[i].Name, err)
			}
		}()
	}
	t0 = time.Now()
	close(start)
	up.Wait()
	close(booted)
	all.Wait()
	return res
}

// hold keeps a session logged in until booted closes, with a TEST UNIT
// READY every 5 s as open-iscsi's NOP-Outs keep a connection alive; then
// checks it still answers and logs out.
func hold(ctx context.Context, in *iscsitest.Initiator, lun uint64, booted <-chan struct{}) error {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-booted:
			if err := tur(in, lun); err != nil {
				return err
			}
			return in.Logout()
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
			if err := tur(in, lun); err != nil {
				return err
			}
		}
	}
}

func tur(in *iscsitest.Initiator, lun uint64) error {
	r, err := in.CommandPastUA(lun, iscsitest.TUR(), nil, 0)
	if err == nil && r.Status != 0 {
		err = fmt.Errorf("TEST UNIT READY: status %#x", r.Status)
	}
	return err
}

// boot is one node's conversation up to its writes; it returns the
// logged-in session.
func (c *client) boot(ctx context.Context, n node, t0 time.Time, r *result) (*iscsitest.Initiator, uint64, error) {
	step := 0
	done := func() { r.at[step] = time.Since(t0); step++ }

	// A PXE ROM: vendor class PXEClient, arch 0 (BIOS), its UUID; it
	// retransmits after 4, 8, 16 and 32 s.
	pxe := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithGeneric(dhcpv4.OptionClientNetworkInterfaceIdentifier, []byte{1, 2, 1}),
		dhcpv4.WithGeneric(dhcpv4.OptionClientMachineIdentifier, append([]byte{0}, uuid(n.index)...)),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionTFTPServerName,
			dhcpv4.OptionBootfileName, dhcpv4.OptionVendorSpecificInformation, dhcpv4.OptionClassIdentifier),
	}
	ack, err := c.dhcp.DORA(ctx, n.mac, []time.Duration{4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second}, pxe...)
	if err != nil {
		return nil, 0, fmt.Errorf("PXE DHCP: %w", err)
	}
	if err := c.leased(n, ack); err != nil {
		return nil, 0, fmt.Errorf("PXE DHCP: %w", err)
	}
	done()

	file := bootFile(ack)
	got, err := c.tftp(n, next(ack), file)
	if err != nil {
		return nil, 0, fmt.Errorf("TFTP %q: %w", file, err)
	}
	if filepath.Base(file) != loader || int64(len(got)) != c.loader {
		return nil, 0, fmt.Errorf("TFTP %s: %d bytes, want %s (%d bytes)", file, len(got), loader, c.loader)
	}
	done()

	// iPXE: user class iPXE, its feature list in option 175; it
	// retransmits after 1, 2, 4, 8 s.
	ipxe := []dhcpv4.Modifier{
		dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00000:UNDI:002001")),
		dhcpv4.WithOption(dhcpv4.OptClientArch(iana.INTEL_X86PC)),
		dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte("iPXE")),
		dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(175), []byte{0xb1, 0x05, 0x01, 0x80, 0x86, 0x10, 0x0e, 0x13, 0x01, 0x01, 0x11, 0x01, 0x01, 0x19, 0x01, 0x01}),
		dhcpv4.WithRequestedOptions(dhcpv4.OptionSubnetMask, dhcpv4.OptionRouter, dhcpv4.OptionBootfileName,
			dhcpv4.OptionRootPath, dhcpv4.GenericOptionCode(175), dhcpv4.GenericOptionCode(203)),
	}
	ack, err = c.dhcp.DORA(ctx, n.mac, []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 10 * time.Second}, ipxe...)
	if err != nil {
		return nil, 0, fmt.Errorf("iPXE DHCP: %w", err)
	}
	if err := c.leased(n, ack); err != nil {
		return nil, 0, fmt.Errorf("iPXE DHCP: %w", err)
	}
	done()

	script, err := c.script(ctx, n, ack)
	if err != nil {
		return nil, 0, fmt.Errorf("script %s: %w", bootFile(ack), err)
	}
	if !bytes.HasPrefix(script, []byte("#!ipxe")) || !bytes.Contains(script, []byte("sanboot")) {
		return nil, 0, fmt.Errorf("script %s does not sanboot: %q", bootFile(ack), script)
	}
	done()

	root, initiator := ack.RootPath(), string(ack.Options.Get(dhcpv4.GenericOptionCode(203)))
	if root == "" || initiator != n.Initiator {
		return nil, 0, fmt.Errorf("iPXE DHCP: root-path %q, initiator %q (want %s)", root, initiator, n.Initiator)
	}
	in, lun, err := c.login(n, root, initiator)
	if err != nil {
		return nil, 0, fmt.Errorf("iSCSI %s: %w", root, err)
	}
	done()
	if err := c.io(in, lun, n, r, done); err != nil {
		in.Close()
		return nil, 0, err
	}
	return in, lun, nil
}

func uuid(i int) []byte {
	u := []byte("NETSANSTORM\x00\x00\x00\x00\x00")
	binary.BigEndian.PutUint32(u[12:], uint32(i))
	return u
}

// bootFile is the file a DHCP reply names: in its file field, or in
// option 67 when the client asked for that (dnsmasq then puts it there).
func bootFile(ack *dhcpv4.DHCPv4) string {
	if ack.BootFileName != "" {
		return ack.BootFileName
	}
	return ack.BootFileNameOption()
}

// next is the server a DHCP reply names for the boot file.
func next(ack *dhcpv4.DHCPv4) string {
	if s := ack.TFTPServerName(); s != "" {
		return s
	}
	return ack.ServerIPAddr.String()
}

// leased checks the ACK gives the node its inventory address.
func (c *client) leased(n node, ack *dhcpv4.DHCPv4) error {
	if got, _ := netip.AddrFromSlice(ack.YourIPAddr.To4()); got != n.ip {
		return fmt.Errorf("leased %v, want %v", ack.YourIPAddr, n.ip)
	}
	return nil
}

// tftp fetches file from server as a PXE ROM does (blksize 1432). pin/tftp
// opens its socket on the client namespace's own address, not the
// node's: servers care about neither.
func (c *client) tftp(n node, server, file string) ([]byte, error) {
	cl, err := tftp.NewClient(net.JoinHostPort(server, "69"))
	if err != nil {
		return nil, err
	}
	cl.SetBlockSize(1432)
	cl.SetTimeout(4 * time.Second)
	cl.SetRetries(5)
	var wt io.WriterTo
	if nerr := netsantest.Enter(c.ns, func() { wt, err = cl.Receive(file, "octet") }); nerr != nil {
		return nil, nerr
	}
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	_, err = wt.WriteTo(&b)
	return b.Bytes(), err
}

// script fetches the iPXE script the ACK names: over HTTP from the node's
// address, or by TFTP.
func (c *client) script(ctx context.Context, n node, ack *dhcpv4.DHCPv4) ([]byte, error) {
	name := bootFile(ack)
	if s, ok := strings.CutPrefix(name, "tftp://"); ok {
		host, file, _ := strings.Cut(s, "/")
		return c.tftp(n, host, file)
	}
	if !strings.HasPrefix(name, "http://") {
		return c.tftp(n, next(ack), name)
	}
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		return c.dial(ctx, n, addr)
	}}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, name, nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("HTTP %s", resp.Status)
	}
	return io.ReadAll(resp.Body)
}

// dial opens a TCP connection from the node's address in the client
// namespace.
func (c *client) dial(ctx context.Context, n node, addr string) (net.Conn, error) {
	var conn net.Conn
	var err error
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: n.ip.AsSlice()}, Timeout: 20 * time.Second}
	if nerr := netsantest.Enter(c.ns, func() { conn, err = d.DialContext(ctx, "tcp4", addr) }); nerr != nil {
		return nil, nerr
	}
	return conn, err
}

// login parses an RFC 4173 root-path (iscsi:server:proto:port:lun:target)
// and logs in to it as initiator, negotiating what open-iscsi does.
func (c *client) login(n node, root, initiator string) (*iscsitest.Initiator, uint64, error) {
	f := strings.SplitN(strings.TrimPrefix(root, "iscsi:"), ":", 5)
	if len(f) != 5 {
		return nil, 0, errors.New("root-path is not iscsi:server:proto:port:lun:target")
	}
	port := f[2]
	if port == "" {
		port = "3260"
	}
	lun, err := strconv.ParseUint(f[3], 10, 16)
	if f[3] == "" {
		lun, err = 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("lun %q: %w", f[3], err)
	}
	conn, err := c.dial(context.Background(), n, net.JoinHostPort(f[0], port))
	if err != nil {
		return nil, 0, err
	}
	in := iscsitest.New(conn)
	isid := [6]byte{0x80, 0x53, 0x54, byte(n.index >> 8), byte(n.index), 1}
	p, err := in.Login(isid, 0, iscsitest.NormalKeys(initiator, f[4],
		login.KV{Key: "HeaderDigest", Value: "None"}, login.KV{Key: "DataDigest", Value: "None"},
		login.KV{Key: "MaxRecvDataSegmentLength", Value: "262144"}, login.KV{Key: "InitialR2T", Value: "Yes"},
		login.KV{Key: "ImmediateData", Value: "Yes"}, login.KV{Key: "FirstBurstLength", Value: "65536"},
		login.KV{Key: "MaxBurstLength", Value: "262144"}, login.KV{Key: "MaxConnections", Value: "1"},
		login.KV{Key: "ErrorRecoveryLevel", Value: "0"})...)
	if err != nil {
		conn.Close()
		return nil, 0, fmt.Errorf("login: %w", err)
	}
	kvs, _ := login.ParseText(p.Data)
	in.MaxSendSegment, in.FirstBurst = 8192, 65536 // RFC 7143's defaults
	for _, kv := range kvs {
		v, _ := strconv.ParseUint(kv.Value, 10, 32)
		switch kv.Key {
		case "MaxRecvDataSegmentLength":
			in.MaxSendSegment = uint32(v)
		case "FirstBurstLength":
			in.FirstBurst = uint32(v)
		case "ImmediateData", "InitialR2T":
			if kv.Value != "Yes" {
				conn.Close()
				return nil, 0, fmt.Errorf("target answered %s=%s", kv.Key, kv.Value)
			}
		}
	}
	return in, lun, nil
}

// io reads the node's root as a boot does and writes its journal.
func (c *client) io(in *iscsitest.Initiator, lun uint64, n node, r *result, done func()) error {
	if err := tur(in, lun); err != nil {
		return err
	}
	rc, err := in.CommandPastUA(lun, []byte{0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 8)
	if err != nil || rc.Status != 0 || len(rc.Data) != 8 {
		return fmt.Errorf("READ CAPACITY: status %#x, %d bytes: %v", rc.Status, len(rc.Data), err)
	}
	bs := int64(binary.BigEndian.Uint32(rc.Data[4:]))
	if bs == 0 || 4096%bs != 0 {
		return fmt.Errorf("block size %d", bs)
	}
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	want := stamp(n.Name)
	for i, o := range c.ops {
		if o.write && r.at[stepRoot] == 0 {
			done()
		}
		cdb := iscsitest.Read10(uint32(o.off/bs), uint16(int64(o.n)/bs))
		var out []byte
		var readLen uint32
		if o.write {
			cdb[0] = 0x2a // WRITE(10)
			out = writeData(n.Name, o.off, o.n)
		} else {
			readLen = uint32(o.n)
		}
		res, err := in.Command(lun, cdb, out, readLen)
		if err == nil && res.Status != 0 {
			err = fmt.Errorf("status %#x sense %x", res.Status, res.Sense)
		}
		if err == nil && !o.write && len(res.Data) != o.n {
			err = fmt.Errorf("%d bytes, want %d", len(res.Data), o.n)
		}
		if err != nil {
			return fmt.Errorf("%s %d bytes at %d: %w", map[bool]string{false: "read", true: "write"}[o.write], o.n, o.off, err)
		}
		if i == 0 && !bytes.Equal(res.Data[:len(want)], want) {
			return fmt.Errorf("its root's first sector is %q: another node's", bytes.TrimRight(res.Data[:64], "\x00"))
		}
		crc.Write(res.Data)
		if o.sync {
			res, err := in.Command(lun, []byte{0x35, 0, 0, 0, 0, 0, 0, 0, 0, 0}, nil, 0)
			if err == nil && res.Status != 0 {
				err = fmt.Errorf("status %#x", res.Status)
			}
			if err != nil {
				return fmt.Errorf("SYNCHRONIZE CACHE: %w", err)
			}
		}
	}
	if r.at[stepRoot] == 0 {
		done()
	}
	r.crc = crc.Sum32()
	done()
	return nil
}

// verify checks what node n read against its own clone, and that its
// writes are there.
func verify(ops []op, n node, r result) error {
	f, err := os.Open(n.root)
	if err != nil {
		return err
	}
	defer f.Close()
	crc := crc32.New(crc32.MakeTable(crc32.Castagnoli))
	for _, o := range ops {
		b := make([]byte, o.n)
		if _, err := f.ReadAt(b, o.off); err != nil {
			return err
		}
		if o.write {
			if !bytes.Equal(b, writeData(n.Name, o.off, o.n)) {
				return fmt.Errorf("%s: its write at %d is not in its root", n.Name, o.off)
			}
			continue
		}
		crc.Write(b)
	}
	if got := crc.Sum32(); got != r.crc {
		return fmt.Errorf("%s read bytes with CRC-32C %08x, its root has %08x", n.Name, r.crc, got)
	}
	return nil
}

// percentile is the p-th percentile of ds (sorted in place).
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*p/100)]
}
