package netsantest

import (
	"context"
	"errors"
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
}
