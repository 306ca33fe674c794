package netsantest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestFreePort(t *testing.T) {
	for _, network := range []string{"tcp", "udp"} {
		port := FreePort(t, network)
		addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
		// The port is free again: the test can bind it.
		var err error
		if network == "udp" {
			var c net.PacketConn
			if c, err = net.ListenPacket(network, addr); err == nil {
				c.Close()
			}
		} else {
			var l net.Listener
			if l, err = net.Listen(network, addr); err == nil {
				l.Close()
			}
		}
		if port == 0 || err != nil {
			t.Errorf("%s port %d: %v", network, port, err)
		}
	}
}

// TestStart: the child's stdout and stderr both reach the log, and its exit
// status is reported.
func TestStart(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("sh not installed")
	}
	log := NewLog(t, "sh")
	p := Start(t, exec.Command(sh, "-c", "echo out; echo err >&2; exit 3"), log)
	WaitFor(t, "the exit", 20*time.Second, func() bool {
		select {
		case <-p.Done():
			return true
		default:
			return false
		}
	})
	var exit *exec.ExitError
	if !errors.As(p.Err(), &exit) || exit.ExitCode() != 3 {
		t.Errorf("Err() = %v, want exit status 3", p.Err())
	}
	if got := log.String(); !strings.Contains(got, "out\n") || !strings.Contains(got, "err\n") {
		t.Errorf("log %q lacks stdout or stderr", got)
	}
}

// TestKill: a child that would run for a minute is gone after Kill.
func TestKill(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("sleep not installed")
	}
	p := Start(t, exec.Command(sleep, "60"), &LogBuffer{})
	p.Kill(t)
	select {
	case <-p.Done():
	default:
		t.Fatal("Done not closed after Kill")
	}
	if p.Err() == nil {
		t.Error("a killed sleep exited with status 0")
	}
}

// TestServe: the service runs while the test does, and its context is
// cancelled and its return waited for at the test's cleanup.
func TestServe(t *testing.T) {
	running, returned := make(chan struct{}), make(chan struct{})
	t.Run("serving", func(t *testing.T) {
		Serve(t, 20*time.Second, func(ctx context.Context) error {
			close(running)
			<-ctx.Done()
			close(returned)
			return nil
		})
		<-running
		select {
		case <-returned:
			t.Fatal("Serve returned before the test ended")
		default:
		}
	})
	select {
	case <-returned:
	default:
		t.Fatal("the subtest's cleanup did not wait for Serve to return")
	}

	// stop ends it before the test does; the cleanup then has nothing to do.
	calls := 0
	stop := Serve(t, 20*time.Second, func(ctx context.Context) error {
		calls++
		<-ctx.Done()
		return nil
	})
	stop()
	if calls != 1 {
		t.Fatalf("serve ran %d times before stop returned, want 1", calls)
	}
}

// TestLab: a machine on the bridge and one cabled straight to the server
// reach the server's address from inside their namespaces, and every
// namespace is gone when the test that made it ends.
func TestLab(t *testing.T) {
	var names []string
	t.Run("bridge", func(t *testing.T) {
		l := NewLab(t, "nstest")
		l.Bridge("198.18.0.1/24")
		a := l.Attach("a", "02:00:5e:10:00:0a", "198.18.0.2/24")
		b := l.Attach("b", "02:00:5e:10:00:0b", "198.18.0.3/24")
		names = []string{l.Server, a, b}
		reaches(t, l.Server, a, b)
		if out, err := exec.Command("ip", "-n", a, "link", "show", "eth0").Output(); err != nil || !strings.Contains(string(out), "02:00:5e:10:00:0a") {
			t.Errorf("%s eth0: %s %v", a, out, err)
		}
	})
	t.Run("cable", func(t *testing.T) {
		l := NewLab(t, "nstest")
		c := l.Cable("c", "02:00:5e:10:00:0c", "198.18.0.2/24", "198.18.0.1/24")
		names = append(names, l.Server, c)
		reaches(t, l.Server, c)
	})
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, ns := range names {
		if strings.Contains(string(out), ns) {
			t.Errorf("namespace %s left behind", ns)
		}
	}
}

// reaches checks that a datagram from each of machines arrives at
// 198.18.0.1 in namespace server.
func reaches(t *testing.T, server string, machines ...string) {
	t.Helper()
	var srv *net.UDPConn
	InNetns(t, server, func() {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(198, 18, 0, 1), Port: 9999})
		if err != nil {
			t.Error(err)
			return
		}
		srv = c
	})
	if srv == nil {
		t.FailNow()
	}
	defer srv.Close()
	for _, ns := range machines {
		InNetns(t, ns, func() {
			c, err := net.Dial("udp4", "198.18.0.1:9999")
			if err != nil {
				t.Error(err)
				return
			}
			defer c.Close()
			c.Write([]byte(ns))
		})
		srv.SetReadDeadline(time.Now().Add(10 * time.Second))
		buf := make([]byte, 64)
		n, from, err := srv.ReadFromUDP(buf)
		if err != nil || string(buf[:n]) != ns {
			t.Errorf("from %s: %q from %v, %v", ns, buf[:n], from, err)
		}
	}
}

// TestForward: a client in the test's own namespace talks, through
// Forward, to a server that listens inside a lab's namespace only; the
// server's close reaches the client, and nothing is left when the test ends.
func TestForward(t *testing.T) {
	l := NewLab(t, "nstest")
	var ln net.Listener
	InNetns(t, l.Server, func() {
		var err error
		if ln, err = net.Listen("tcp4", "127.0.0.1:0"); err != nil {
			t.Error(err)
		}
	})
	if ln == nil {
		t.FailNow()
	}
	served := make(chan struct{})
	go func() {
		defer close(served)
		for range 2 {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b, _ := io.ReadAll(c)
			c.Write(append([]byte("echo: "), b...))
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-served })
	if c, err := net.DialTimeout("tcp4", ln.Addr().String(), time.Second); err == nil {
		c.Close()
		t.Skipf("%s answers outside its namespace too: nothing to forward", ln.Addr())
	}
	local := Forward(t, l.Server, ln.Addr().String())
	for i := range 2 {
		c, err := net.Dial("tcp4", local)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "hello %d", i)
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		c.Close()
		if want := fmt.Sprintf("echo: hello %d", i); err != nil || string(got) != want {
			t.Errorf("through the forward: %q %v, want %q", got, err, want)
		}
	}
}
