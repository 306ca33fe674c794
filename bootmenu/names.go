package bootmenu

import (
	"errors"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/timeline"
)

// ScriptName is the name of mac's iPXE script, boot/52-54-00-00-00-01.ipxe:
// what dhcpd tells iPXE to fetch and Resolve answers with the script.
func ScriptName(mac net.HardwareAddr) string {
	return "boot/" + inventory.MAC{HardwareAddr: mac}.Hyphens() + ".ipxe"
}

// ParseScriptName recognises a ScriptName and returns its MAC; the MAC may
// also be written with colons.
func ParseScriptName(name string) (net.HardwareAddr, bool) {
	return parseMACName(name, "boot/", ".ipxe")
}

// parseMACName recognises prefix + an Ethernet MAC (hyphens or colons) +
// suffix and returns the MAC.
func parseMACName(name, prefix, suffix string) (net.HardwareAddr, bool) {
	base, ok := strings.CutPrefix(name, prefix)
	if !ok {
		return nil, false
	}
	base, ok = strings.CutSuffix(base, suffix)
	if !ok {
		return nil, false
	}
	mac, err := net.ParseMAC(base)
	if err != nil || len(mac) != 6 {
		return nil, false
	}
	return mac, true
}

// Refusal is how a server answers a name Resolve refused, so that TFTP and
// HTTP clients are told the same thing for the same error.
type Refusal struct {
	// Result names the outcome in the log line and tftpd's metrics:
	// not_found, refused (a bad name), forbidden or error.
	Result string
	// Message is the text of the TFTP ERROR packet: no path, no detail
	// beyond what tells the person at the console what to fix. (pin/tftp
	// sends every ERROR with code 1.)
	Message string
	// Status is the HTTP status.
	Status int
	// Level is the level the refusal is logged at. A missing file is Info:
	// clients look for optional names (shim its fallback and MOK manager,
	// PXELINUX and GRUB their per-machine configs) on every boot, and an
	// operator's own missing file is reported by check and counted in the
	// metrics. A refused name is Warn, a server fault Error.
	Level zapcore.Level
}

// Refuse is the Refusal for an error of Resolve.
func Refuse(err error) Refusal {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return Refusal{"not_found", "file not found", http.StatusNotFound, zapcore.InfoLevel}
	case errors.Is(err, ErrBadName):
		return Refusal{"refused", "access violation", http.StatusBadRequest, zapcore.WarnLevel}
	case errors.Is(err, ErrForbidden):
		return Refusal{"forbidden", "access violation", http.StatusForbidden, zapcore.WarnLevel}
	}
	return Refusal{"error", "server error", http.StatusInternalServerError, zapcore.ErrorLevel}
}

// RequestFields are what both servers log of a request: op (the TFTP
// opcode's or HTTP method's name), the file as asked, the client's address.
func RequestFields(op, name string, ip netip.Addr) []zap.Field {
	return []zap.Field{zap.String("op", op), zap.String("file", name), zap.Stringer("ip", ip)}
}

// Event is f, sent whole over proto (tftp, http) as name, as a step of its
// machine's boot: the key timeline.Recorder.Record takes (the MAC f was
// attributed to; "" when none), the step and what was sent.
func (f *File) Event(proto, name string) (mac string, step timeline.Step, detail string) {
	step = timeline.File
	switch f.Kind {
	case KindLoader:
		step = timeline.Loader
	case KindScript, KindUnknown, KindCmdline:
		step = timeline.Script
	}
	return f.MAC, step, proto + " " + name
}

// Fields are what both servers log of a resolved file: its kind and, when
// known, the host and MAC it goes to.
func (f *File) Fields() []zap.Field {
	fields := []zap.Field{zap.String("kind", string(f.Kind))}
	if f.Host != "" {
		fields = append(fields, zap.String("host", f.Host))
	}
	if f.MAC != "" {
		fields = append(fields, zap.String("mac", f.MAC))
	}
	return fields
}
