package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"golang.org/x/sys/unix"
)

// notifier tells systemd how serve is doing, as sd_notify(3) does: state
// lines in one datagram to the unix socket NOTIFY_SOCKET names (a unit of
// Type=notify sets it). Not started that way, it says nothing; a nil
// *notifier neither.
type notifier struct {
	conn *net.UnixConn
	log  *zap.Logger
	// watchdog is how often to send WATCHDOG=1: half the WATCHDOG_USEC
	// systemd set (WatchdogSec=), 0 for none.
	watchdog time.Duration
}

// newNotifier reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID and
// takes them out of the environment, so that no program netsan runs
// speaks for it.
func newNotifier(log *zap.Logger) (*notifier, error) {
	path := os.Getenv("NOTIFY_SOCKET")
	usec, pid := os.Getenv("WATCHDOG_USEC"), os.Getenv("WATCHDOG_PID")
	for _, v := range []string{"NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"} {
		os.Unsetenv(v)
	}
	if path == "" {
		return nil, nil
	}
	if strings.HasPrefix(path, "@") { // an abstract socket
		path = "\x00" + path[1:]
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("systemd notify socket: %w", err)
	}
	n := &notifier{conn: conn, log: log}
	if us, err := strconv.ParseInt(usec, 10, 64); err == nil && us > 0 && (pid == "" || pid == strconv.Itoa(os.Getpid())) {
		n.watchdog = time.Duration(us) * time.Microsecond / 2
	}
	return n, nil
}

// send writes state lines ("READY=1", "STATUS=…") in one datagram. A
// failure is logged: systemd may then stop a service that works, but
// there is nothing better to do about it.
func (n *notifier) send(lines ...string) {
	if n == nil {
		return
	}
	if _, err := n.conn.Write([]byte(strings.Join(lines, "\n"))); err != nil {
		n.log.Warn("systemd notify", zap.Strings("state", lines), zap.Error(err))
	}
}

// ready says serve answers; status is what systemctl status shows.
func (n *notifier) ready(status string) { n.send("READY=1", "STATUS="+status) }

// reloading says a reload has begun; ready ends it.
func (n *notifier) reloading() {
	var ts unix.Timespec
	_ = unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	// MONOTONIC_USEC lets systemd 253 and later tell this reload from an
	// earlier one; older ones ignore it.
	n.send("RELOADING=1", "STATUS=reloading the inventory", fmt.Sprintf("MONOTONIC_USEC=%d", ts.Nano()/1000))
}

// stopping says serve is shutting down.
func (n *notifier) stopping() {
	n.send("STOPPING=1", "STATUS=stopping: logging sessions out, saving leases")
}

// pet sends WATCHDOG=1 every n.watchdog until ctx ends; without a watchdog
// it returns at once. The pings come from the supervisor's own goroutine
// group: a process whose goroutines no longer run gets restarted.
func (n *notifier) pet(ctx context.Context) error {
	if n == nil || n.watchdog <= 0 {
		return nil
	}
	t := time.NewTicker(n.watchdog)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			n.send("WATCHDOG=1")
		}
	}
}

// close closes the socket.
func (n *notifier) close() {
	if n != nil {
		n.conn.Close()
	}
}
