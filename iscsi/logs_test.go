package iscsi

import (
	"net"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/netsan/netsan/iscsi/iscsitest"
	"github.com/netsan/netsan/iscsi/login"
	"github.com/netsan/netsan/netsantest"
)

// TestLogLevels checks what the target logs as sessions end: an initiator
// hanging up between PDUs (EOF, or a reset) at DEBUG, a broken PDU at WARN,
// one INFO line when the server stops; every line from the "iscsi" logger
// without the prefix repeated in its message.
func TestLogLevels(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	addr, cancel, served := serveOwn(t, zap.New(core))

	// ended waits for the session from ri's address to close, and returns
	// the lines logged for its connection at level and above, but for its
	// login and close.
	ended := func(ri *rawInit, level zapcore.Level) []observer.LoggedEntry {
		t.Helper()
		ip := ri.Conn.LocalAddr().String()
		mine := func(e observer.LoggedEntry) bool { return e.ContextMap()["ip"] == ip }
		netsantest.WaitFor(t, "session closed", 10*time.Second, func() bool {
			return logs.Filter(func(e observer.LoggedEntry) bool { return mine(e) && e.Message == "session closed" }).Len() == 1
		})
		return logs.Filter(func(e observer.LoggedEntry) bool {
			return mine(e) && e.Level >= level && e.Message != "login" && e.Message != "session closed"
		}).All()
	}

	// EOF: the initiator closes without logging out.
	ri := dial(t, addr)
	ri.loginOK()
	ri.turGood()
	ri.Conn.Close()
	if got := ended(ri, zap.InfoLevel); len(got) != 0 {
		t.Errorf("EOF logged above DEBUG: %+v", got)
	}
	if logs.FilterMessage("initiator disconnected").FilterFieldKey("op").Len() != 1 {
		t.Errorf("EOF not logged at DEBUG: %+v", logs.All())
	}

	// A reset: the same.
	ri = dial(t, addr)
	ri.login([6]byte{0x80, 0, 0, 0, 0, 2}, 0, iscsitest.NormalKeys(testInitiator, testTarget)...)
	ri.turGood()
	ri.Conn.(*net.TCPConn).SetLinger(0)
	ri.Conn.Close()
	if got := ended(ri, zap.InfoLevel); len(got) != 0 {
		t.Errorf("reset logged above DEBUG: %+v", got)
	}

	// A header digest error is the initiator's fault: WARN.
	ri = dial(t, addr)
	ri.login([6]byte{0x80, 0, 0, 0, 0, 3}, 0, iscsitest.NormalKeys(testInitiator, testTarget, login.KV{Key: "HeaderDigest", Value: "CRC32C"})...)
	ri.sendBadHeaderDigest()
	if got := ended(ri, zap.WarnLevel); len(got) != 1 || got[0].Message != "connection failed" {
		t.Errorf("header digest error: logged %+v, want one WARN", got)
	}

	cancel()
	if err := <-served; err != nil {
		t.Fatal(err)
	}
	if n := logs.FilterMessage("stopped").FilterLevelExact(zap.InfoLevel).Len(); n != 1 {
		t.Errorf("%d INFO 'stopped' lines, want 1", n)
	}
	for _, e := range logs.All() {
		if e.LoggerName != "iscsi" && !strings.HasPrefix(e.LoggerName, "iscsi.") ||
			strings.HasPrefix(e.Message, "iscsi") || strings.HasPrefix(e.Message, "scsi") {
			t.Errorf("logger %q, message %q: want the iscsi logger, the prefix only in its name", e.LoggerName, e.Message)
		}
	}
}
