package lab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// A lab of gateways: two or more `netsan serve --gateway NAME`, each in a
// namespace of its own cabled to the bridge with an address of its own,
// all reading one inventory whose [cluster] interface is their eth0.
// ServerIP is the floating address: the bridge gives it up for ProbeIP,
// from which tests reach the network as a node does, and whichever gateway
// leads adds it to its eth0.
const (
	// GatewayInterface is a gateway's link to the bridge: [cluster]
	// interface and dhcp.interface.
	GatewayInterface = "eth0"
	// ProbeIP is the bridge's address in a lab of gateways.
	ProbeIP = "198.18.0.254"
)

// Gateway is one netsan gateway of a lab.
type Gateway struct {
	// Name is its --gateway name, and its namespace's suffix.
	Name string
	// NS is its namespace; IP its own address there.
	NS, IP string
	// DataDir is its own data_dir: in its namespace it is mounted over the
	// inventory's, as two boxes have disks of their own, so nothing a
	// gateway keeps there reaches another but through Ceph.
	DataDir string

	lab                  *Lab
	bin, config, dataDir string

	mu   sync.Mutex
	proc *Proc
}

// AddGateways gives up ServerIP on the bridge (it floats from now on) and
// makes n gateways, gw1 at 198.18.0.2 and on, to run bin on inv, which
// needs Ceph and ClusterLease. It writes inv once, to Dir/netsan.toml,
// where every gateway reads it, and checks it in gw1's namespace. None is
// started.
func (l *Lab) AddGateways(ctx context.Context, bin string, inv Inventory, n int) ([]*Gateway, error) {
	if inv.Ceph == "" || inv.ClusterLease == "" {
		return nil, fmt.Errorf("gateways: the inventory needs Ceph and ClusterLease")
	}
	if n < 1 || n > 8 {
		return nil, fmt.Errorf("gateways: %d, want 1 to 8", n)
	}
	for _, s := range [][]string{
		{"addr", "del", Prefix, "dev", Bridge},
		{"addr", "add", ProbeIP + "/24", "dev", Bridge},
	} {
		if err := run(ctx, "ip", append([]string{"-n", l.Name}, s...)...); err != nil {
			return nil, err
		}
	}
	if err := os.MkdirAll(inv.DataDir, 0o755); err != nil {
		return nil, err
	}
	var gws []*Gateway
	for i := 1; i <= n; i++ {
		g := &Gateway{
			Name:    fmt.Sprintf("gw%d", i),
			IP:      fmt.Sprintf("198.18.0.%d", 1+i),
			lab:     l,
			bin:     bin,
			config:  filepath.Join(l.Dir, "netsan.toml"),
			dataDir: inv.DataDir,
		}
		g.DataDir = filepath.Join(l.Dir, g.Name+"-data")
		if err := os.MkdirAll(g.DataDir, 0o755); err != nil {
			return nil, err
		}
		ns, err := l.Attach(ctx, g.Name, fmt.Sprintf("52:54:00:47:57:%02x", i), g.IP+"/24")
		if err != nil {
			return nil, err
		}
		g.NS = ns
		gws = append(gws, g)
	}
	if err := l.writeInventory(ctx, gws[0].NS, bin, gws[0].config, inv); err != nil {
		return nil, err
	}
	return gws, nil
}

// Start runs `netsan serve --gateway NAME` in the gateway's namespace, with
// its own data_dir mounted over the inventory's (in that namespace only:
// ip netns exec gives each command a mount namespace of its own). The log
// is Dir/NAME.log, appended to by every start. It does not wait: whether
// it leads or stands by is for WaitLeader to find.
func (g *Gateway) Start() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.proc != nil {
		select {
		case <-g.proc.Done():
		default:
			return fmt.Errorf("%s: already running", g.Name)
		}
	}
	// sh execs netsan: the process the lab signals is netsan itself.
	p, err := g.lab.StartIn(g.NS, g.Name, "sh", "-c", `mount --bind "$1" "$2" && shift 2 && exec "$@"`, "sh",
		g.DataDir, g.dataDir,
		g.bin, "serve", "-c", g.config, "--gateway", g.Name, "--log-format", "console")
	if err != nil {
		return err
	}
	g.proc = p
	return nil
}

// Proc is the netsan last started, nil before the first Start.
func (g *Gateway) Proc() *Proc {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.proc
}

// Running reports whether its netsan was started and has not exited (a
// frozen one is running).
func (g *Gateway) Running() bool {
	p := g.Proc()
	if p == nil {
		return false
	}
	select {
	case <-p.Done():
		return false
	default:
		return true
	}
}

// HasAddress reports whether ServerIP is on the gateway's interface: it
// leads, or led and was killed before it could remove the address.
func (g *Gateway) HasAddress(ctx context.Context) (bool, error) {
	out, err := RunIn(ctx, g.NS, "ip", "-4", "-o", "addr", "show", "dev", GatewayInterface)
	if err != nil {
		return false, err
	}
	return strings.Contains(out, " "+ServerIP+"/"), nil
}

// WaitAddressGone waits until ServerIP is no longer on the gateway's
// interface, polling for at most timeout.
func (g *Gateway) WaitAddressGone(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		has, err := g.HasAddress(ctx)
		if err != nil || !has {
			return err
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return fmt.Errorf("%s: %s still on %s after %s", g.Name, ServerIP, GatewayInterface, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Log returns what the gateway's netsan has logged so far, over all its
// starts.
func (g *Gateway) Log() string {
	b, _ := os.ReadFile(filepath.Join(g.lab.Dir, g.Name+".log"))
	return string(b)
}

// WaitLeader waits until exactly one running gateway of gws has ServerIP
// on its interface and ServerIP's iSCSI port answers from the bridge, and
// returns that gateway.
func (l *Lab) WaitLeader(ctx context.Context, gws []*Gateway, timeout time.Duration) (*Gateway, error) {
	deadline := time.Now().Add(timeout)
	for {
		var leaders []*Gateway
		for _, g := range gws {
			if !g.Running() {
				continue
			}
			has, err := g.HasAddress(ctx)
			if err != nil {
				return nil, err
			}
			if has {
				leaders = append(leaders, g)
			}
		}
		if len(leaders) == 1 && l.WaitTCP(ctx, ServerIP+":3260", 0) == nil {
			return leaders[0], nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			names := make([]string, len(leaders))
			for i, g := range leaders {
				names[i] = g.Name
			}
			return nil, fmt.Errorf("no single leader serving on %s after %s (with the address: %v)", ServerIP, timeout, names)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// loginAttempt bounds one login of WaitLogin: a SYN sent where nobody
// answers (the address moving) is not waited out.
const loginAttempt = 2 * time.Second

// WaitLogin logs in to target at ServerIP from the bridge's namespace as
// initiator, with libiscsi's iscsi-inq (a login and an INQUIRY of LUN 0),
// until one succeeds or timeout passes, and returns when the first did.
func (l *Lab) WaitLogin(ctx context.Context, initiator, target string, timeout time.Duration) (time.Time, error) {
	deadline := time.Now().Add(timeout)
	url := "iscsi://" + ServerIP + "/" + target + "/0"
	for {
		c, cancel := context.WithTimeout(ctx, loginAttempt)
		_, err := l.Run(c, "iscsi-inq", "-i", initiator, url)
		cancel()
		if err == nil {
			return time.Now(), nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("no login to %s as %s within %s: %w", url, initiator, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
