package netsantest

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/server4"
	"golang.org/x/sys/unix"
)

// ErrNAK: the server answered a DHCP exchange with a NAK.
var ErrNAK = errors.New("NAK")

// DHCPClients is many simulated DHCP clients sharing one socket on port
// 68, as a benchmark's thousands of MACs do: they send with the broadcast
// flag set, so that every reply comes back to this socket whatever
// chaddr it names, and a reader hands each to the exchange waiting for
// its transaction ID. Close stops the reader.
type DHCPClients struct {
	conn    *net.UDPConn
	mu      sync.Mutex
	waiting map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4
	done    chan struct{}
}

// ListenDHCP opens the socket on iface inside namespace ns.
func ListenDHCP(ns, iface string) (*DHCPClients, error) {
	var conn *net.UDPConn
	var err error
	if nerr := Enter(ns, func() {
		conn, err = server4.NewIPv4UDPConn(iface, &net.UDPAddr{Port: dhcpv4.ClientPort})
	}); nerr != nil {
		return nil, nerr
	}
	if err != nil {
		return nil, err
	}
	// A storm's replies, a burst of hundreds once a lease save lets them
	// go, must not be lost at the client: as root, past net.core.rmem_max.
	forced := false
	if rc, err := conn.SyscallConn(); err == nil {
		rc.Control(func(fd uintptr) {
			forced = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 4<<20) == nil
		})
	}
	if !forced {
		conn.SetReadBuffer(4 << 20)
	}
	c := &DHCPClients{conn: conn, waiting: map[dhcpv4.TransactionID]chan *dhcpv4.DHCPv4{}, done: make(chan struct{})}
	go c.read()
	return c, nil
}

func (c *DHCPClients) read() {
	defer close(c.done)
	ReadReplies(c.conn, 0, c.deliver)
}

// ReadReplies hands each DHCP reply (BOOTREPLY) that comes to conn to f,
// passing over anything else, until a read fails: conn closed or, when
// idle is not zero, nothing for that long.
func ReadReplies(conn net.PacketConn, idle time.Duration, f func(*dhcpv4.DHCPv4)) {
	buf := make([]byte, 1500)
	for {
		if idle > 0 {
			conn.SetReadDeadline(time.Now().Add(idle))
		}
		n, _, err := conn.ReadFrom(buf)
		if err != nil {
			return
		}
		if m, err := dhcpv4.FromBytes(buf[:n]); err == nil && m.OpCode == dhcpv4.OpcodeBootReply {
			f(m)
		}
	}
}

// deliver hands m to the exchange waiting for its transaction ID, if any.
func (c *DHCPClients) deliver(m *dhcpv4.DHCPv4) {
	c.mu.Lock()
	ch := c.waiting[m.TransactionID]
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- m:
		default:
		}
	}
}

// Close closes the socket and waits for the reader.
func (c *DHCPClients) Close() error {
	err := c.conn.Close()
	<-c.done
	return err
}

// Exchange broadcasts m and waits for a reply of type want, sending m
// again each time one of waits passes without it (a PXE ROM waits 4, 8,
// 16, 32 s); it fails with ErrNAK on a NAK, or when waits run out or ctx
// ends.
func (c *DHCPClients) Exchange(ctx context.Context, m *dhcpv4.DHCPv4, want dhcpv4.MessageType, waits []time.Duration) (*dhcpv4.DHCPv4, error) {
	ch := make(chan *dhcpv4.DHCPv4, 4)
	c.mu.Lock()
	c.waiting[m.TransactionID] = ch
	c.mu.Unlock()
	defer func() { c.mu.Lock(); delete(c.waiting, m.TransactionID); c.mu.Unlock() }()
	b := m.ToBytes()
	dst := &net.UDPAddr{IP: net.IPv4bcast, Port: dhcpv4.ServerPort}
	for _, wait := range waits {
		if _, err := c.conn.WriteTo(b, dst); err != nil {
			return nil, err
		}
		timer := time.NewTimer(wait)
	await:
		for {
			select {
			case r := <-ch:
				switch r.MessageType() {
				case dhcpv4.MessageTypeNak:
					timer.Stop()
					return nil, ErrNAK
				case want:
					timer.Stop()
					return r, nil
				}
			case <-timer.C:
				break await
			case <-ctx.Done():
				timer.Stop()
				return nil, ctx.Err()
			}
		}
	}
	return nil, errors.New("no " + want.String() + " after " + sum(waits).String())
}

// DORA runs one DISCOVER/OFFER/REQUEST/ACK for mac, both requests with the
// broadcast flag and mods, each sent again as Exchange does after waits,
// and returns the ACK.
func (c *DHCPClients) DORA(ctx context.Context, mac net.HardwareAddr, waits []time.Duration, mods ...dhcpv4.Modifier) (*dhcpv4.DHCPv4, error) {
	mods = append([]dhcpv4.Modifier{dhcpv4.WithBroadcast(true)}, mods...)
	disc, err := dhcpv4.NewDiscovery(mac, mods...)
	if err != nil {
		return nil, err
	}
	offer, err := c.Exchange(ctx, disc, dhcpv4.MessageTypeOffer, waits)
	if err != nil {
		return nil, err
	}
	req, err := dhcpv4.NewRequestFromOffer(offer, mods...)
	if err != nil {
		return nil, err
	}
	return c.Exchange(ctx, req, dhcpv4.MessageTypeAck, waits)
}

func sum(ds []time.Duration) (s time.Duration) {
	for _, d := range ds {
		s += d
	}
	return s
}
