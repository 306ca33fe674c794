// Command netsan turns a Linux box into a network-boot SAN appliance: DHCP for
// PXE/iPXE, TFTP and HTTP boot files, and an iSCSI target, from one inventory.
//
//	netsan serve -c FILE      run every service the inventory enables
//	netsan check -c FILE      validate; FILE:LINE:COL: message per problem
//	netsan hosts -c FILE      table of hosts, their targets and root images
//	netsan image …            golden images and per-host roots
//	netsan version            version and commit
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"golang.org/x/sys/unix"
	"golang.org/x/term"
)

// Set at build time: go build -ldflags "-X main.version=… -X main.commit=…".
var (
	version = "dev"
	commit  = ""
)

const usage = `usage: netsan <command> [flags]

commands:
  serve   -c FILE            run every service the inventory enables
  check   -c FILE            validate the inventory and, unless --offline, that this
                             machine can serve it (golden images, devices, iPXE
                             loaders); exit 1 when invalid
  hosts   -c FILE            list hosts: MAC, IP, boot mode, target, root image
  hosts   add NAME --mac MAC [--ip IP] [--boot MODE] [--from IMAGE] [--size SIZE]
          rm NAME [--delete-root]
                             add or remove a [[host]], the rest of the file kept as it is
  hosts   seen               machines that asked to boot and are not in the inventory
  image   list|clone HOST…|--all|reset [--force] [--yes] HOST…|import FILE NAME
                             golden images and host roots
  version                    print version and commit

-c defaults to ./netsan.toml, then /etc/netsan/netsan.toml.
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// errUsage marks a command-line mistake: exit status 2, like flag.
var errUsage = errors.New("usage")

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "serve":
		err = cmdServe(rest, stderr)
	case "check":
		err = cmdCheck(rest, stdout, stderr)
	case "hosts":
		err = cmdHosts(rest, stdout, stderr)
	case "image":
		err = cmdImage(rest, stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "netsan %s %s\n", version, revision())
		return 0
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "netsan: unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	var help helpRequest
	switch {
	case err == nil:
		return 0
	case errors.As(err, &help):
		help.fs.SetOutput(stdout)
		help.fs.Usage()
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errInvalid):
		return 1
	default:
		fmt.Fprintf(stderr, "netsan: %v\n", err)
		return 1
	}
}

func revision() string {
	if commit != "" {
		return commit
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				return s.Value
			}
		}
	}
	return "unknown"
}

// commonFlags are the flags every inventory-reading command takes.
type commonFlags struct {
	config    string
	logFormat string
	logLevel  string
}

// commandHelp is what `netsan COMMAND -h` prints above the flags: the
// arguments COMMAND takes and what it does.
var commandHelp = map[string]struct{ args, doc string }{
	"serve": {"[-c FILE] [--gateway NAME]", `Runs every service the inventory enables: DHCP, TFTP, HTTP and the iSCSI
target. SIGHUP or an edit of FILE reloads it (a reload that does not
validate changes nothing); SIGTERM or SIGINT stops gracefully.`},
	"check": {"[-c FILE] [--offline]", `Validates the inventory and prints each problem as FILE:LINE:COL: message.
Unless --offline it also looks at this machine: golden images a missing
root is cloned from, devices and images the target opens, iPXE loaders.
Exit status 0 when valid, 1 when not.`},
	"hosts": {"[-c FILE]", `Lists the hosts: name, MAC, IP, boot mode, target IQN, root image, its
size and what it allocates. To change them (netsan hosts add -h and so on):

  hosts add NAME --mac MAC [--ip IP] [--boot MODE] [--from IMAGE] [--size SIZE] [--serial S]
  hosts rm NAME [--delete-root]
  hosts seen`},
	"hosts add": {"NAME --mac MAC [--ip IP] [--boot MODE] [--from IMAGE] [--size SIZE] [--serial S] [-c FILE]", `Adds a [[host]] after the last one in FILE; every other byte of the file
(comments, order, spacing) stays as it is. IP defaults to the first free
address of dhcp.subnet outside the pool. The result is checked as check
checks it, and nothing is written when it would not pass; it is written
atomically, so a running serve reloads it.`},
	"hosts rm": {"NAME [--delete-root] [-c FILE]", `Removes the [[host]] named NAME from FILE, with the comment lines directly
above it (no blank line between); every other byte of the file stays as it
is. Checked and written as hosts add does. Its root image stays on disk
unless --delete-root.`},
	"hosts seen": {"[-c FILE] [--server URL]", `Lists the machines that asked the running serve to boot (PXE, iPXE,
Raspberry Pi) and are not in the inventory: MAC, kind, architecture,
vendor class, first and last seen, the address leased to it. For each, the
[[host]] that would let it boot, and the hosts add command that adds it:
each passes check, and all of them together too. The server keeps the 256
seen last, in memory.`},
	"image list": {"[-c FILE]", `Lists golden images, host roots and orphaned roots (kept after their host
left the inventory): size, allocated, clone source, shared or copied.`},
	"image clone": {"[-c FILE] HOST…|--all", `Makes each named host's missing root (with --all, every host's whose root
has a golden image, root.from) from its golden image: a reflink where the
file system has them, else a sparse copy. A root that is there already is
kept, and said so: running it again does nothing more.`},
	"image reset": {"[-c FILE] [--force] [--yes] HOST…", `Replaces each named host's root with a fresh clone of its golden image,
after asking on the terminal; --yes goes on without asking, and without a
terminal to ask on nothing is done unless it is given. Refused while the
host has an iSCSI session, unless --force, which logs it out first.`},
	"image import": {"[-c FILE] FILE NAME", `Copies a raw disk image (MBR or GPT) or a qcow2 image in as golden image
NAME (data_dir/golden/NAME.img, or with [ceph] the RBD image POOL/NAME)
and prints its [[image]] stanza.`},
}

func newFlagSet(name string, stderr io.Writer, c *commonFlags) *flag.FlagSet {
	fs := flag.NewFlagSet("netsan "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		h := commandHelp[name]
		fmt.Fprintf(fs.Output(), "usage: netsan %s %s\n\n", name, h.args)
		if h.doc != "" {
			fmt.Fprintf(fs.Output(), "%s\n\n", h.doc)
		}
		fmt.Fprintln(fs.Output(), "flags:")
		fs.PrintDefaults()
	}
	fs.StringVar(&c.config, "c", "", "inventory file (default ./netsan.toml, then /etc/netsan/netsan.toml)")
	fs.StringVar(&c.logFormat, "log-format", "", "log format: console or json (default: console on a terminal, else json)")
	fs.StringVar(&c.logLevel, "log-level", "info", "log level: debug, info, warn, error")
	return fs
}

// helpRequest is -h: run prints the command's usage on stdout, exit 0.
type helpRequest struct{ fs *flag.FlagSet }

func (helpRequest) Error() string        { return "help requested" }
func (helpRequest) Is(target error) bool { return target == flag.ErrHelp }

// parse runs fs.Parse. flag would print the usage itself, on the flag
// set's output (stderr), for -h as for a mistake: here -h becomes a
// helpRequest, and a mistake prints the usage after flag's message.
func parse(fs *flag.FlagSet, args []string) error {
	usage := fs.Usage
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	switch {
	case errors.Is(err, flag.ErrHelp):
		return helpRequest{fs}
	case err != nil:
		fs.Usage()
		return errUsage
	}
	return nil
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := parse(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "%s: unexpected argument %q\n", fs.Name(), fs.Arg(0))
		return errUsage
	}
	return nil
}

// configPath resolves -c: the flag, else ./netsan.toml, else /etc/netsan/netsan.toml.
func configPath(flagValue string) string {
	if flagValue != "" {
		return flagValue
	}
	if _, err := os.Stat("netsan.toml"); err == nil {
		return "netsan.toml"
	}
	return "/etc/netsan/netsan.toml"
}

// newLogger builds the one logger passed down to every service: a console
// encoder on a terminal, JSON otherwise (journald, files, pipes).
func newLogger(format, level string, w io.Writer) (*zap.Logger, error) {
	lvl, err := zapcore.ParseLevel(level)
	if err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	if format == "" {
		format = "json"
		if f, ok := w.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
			format = "console"
		}
	}
	ec := zap.NewProductionEncoderConfig()
	ec.EncodeTime = zapcore.ISO8601TimeEncoder
	var enc zapcore.Encoder
	switch format {
	case "console":
		ec.EncodeLevel = zapcore.CapitalColorLevelEncoder
		ec.EncodeTime = zapcore.TimeEncoderOfLayout("15:04:05.000")
		enc = zapcore.NewConsoleEncoder(ec)
	case "json":
		enc = zapcore.NewJSONEncoder(ec)
	default:
		return nil, fmt.Errorf("--log-format %q: want console or json", format)
	}
	return zap.New(zapcore.NewCore(enc, zapcore.Lock(zapcore.AddSync(w)), lvl)), nil
}

// signalContext is cancelled by SIGTERM or SIGINT, whose arrival it logs by
// name; SIGHUP arrives on hup. stop ends the goroutine that waits for them.
func signalContext(log *zap.Logger) (ctx context.Context, hup <-chan os.Signal, stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	term := make(chan os.Signal, 1)
	signal.Notify(term, syscall.SIGTERM, syscall.SIGINT)
	h := make(chan os.Signal, 1)
	signal.Notify(h, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select {
		case s := <-term:
			logSignal(log, s, "stop")
			cancel()
		case <-ctx.Done():
		}
	}()
	return ctx, h, func() {
		signal.Stop(term)
		signal.Stop(h)
		cancel()
		<-done
	}
}

// logSignal says which signal arrived ("SIGTERM", not Go's "terminated")
// and what netsan does about it.
func logSignal(log *zap.Logger, s os.Signal, op string) {
	name := s.String()
	if n, ok := s.(syscall.Signal); ok && unix.SignalName(n) != "" {
		name = unix.SignalName(n)
	}
	log.Info("signal received", zap.String("signal", name), zap.String("op", op))
}
