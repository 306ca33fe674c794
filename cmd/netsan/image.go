package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/schollz/progressbar/v3"
	"go.uber.org/zap"
	"golang.org/x/term"

	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/httpd"
	"github.com/netsan/netsan/images"
	"github.com/netsan/netsan/inventory"
)

const imageHelp = `usage: netsan image <command> [flags]

commands:
  list   [-c FILE]                      golden images, host roots and orphaned roots (kept after
                                        their host left the inventory): size, allocated, source, shared;
                                        for RBD images the used bytes (as rbd du) and a clone's parent
  clone  [-c FILE] HOST…|--all          clone missing roots from their golden image (root.from);
                                        --all: every host's; a root that exists is kept
  reset  [-c FILE] [--force] [--yes] HOST…
                                        replace roots with fresh clones, after asking on the
                                        terminal (--yes: without asking; needed without a terminal);
                                        refused while the host has an iSCSI session unless --force,
                                        which logs it out
  import [-c FILE] FILE NAME            copy a raw disk image (MBR or GPT) or a qcow2 image in as
                                        golden image NAME (data_dir/golden/NAME.img, or with [ceph]
                                        the RBD image POOL/NAME) and print its [[image]] stanza;
                                        anything else is refused, nothing written

Flags may come before or after the arguments; after -- none is a flag. Every
host named is acted on: an unknown or repeated name refuses the command
before any root is touched.
`

// cmdImage runs `netsan image …`.
func cmdImage(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, imageHelp)
		return errUsage
	}
	switch sub, rest := args[0], args[1:]; sub {
	case "list", "ls":
		return imageList(rest, stdout, stderr)
	case "clone":
		return imageClone(rest, stdout, stderr)
	case "reset":
		return imageReset(rest, stdout, stderr)
	case "import":
		return imageImport(rest, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, imageHelp)
		return nil
	default:
		fmt.Fprintf(stderr, "netsan image: unknown command %q\n\n%s", sub, imageHelp)
		return errUsage
	}
}

// parseArgs parses flags wherever they appear among the arguments
// (`image clone node1 -c lab.toml` as well as `image clone -c lab.toml node1`)
// and returns the others, every one of them, in order. After "--" nothing
// is a flag (`image import -- -odd-name.img NAME`). Each round consumes at
// least one argument, so the loop ends.
func parseArgs(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parse(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		// flag consumes a "--" that ends the flags: the rest is positional.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// positional is parseArgs wanting exactly n positional arguments and every
// required flag set; otherwise it prints the usage line and returns errUsage.
func positional(fs *flag.FlagSet, args []string, n int, stderr io.Writer, usage string, required ...*string) ([]string, error) {
	pos, err := parseArgs(fs, args)
	if err != nil {
		return nil, err
	}
	missing := slices.ContainsFunc(required, func(v *string) bool { return *v == "" })
	if len(pos) != n || missing {
		fmt.Fprintln(stderr, "usage: "+usage)
		return nil, errUsage
	}
	return pos, nil
}

func imageList(args []string, stdout, stderr io.Writer) error {
	inv, err := loadCommand("image list", args, stderr)
	if err != nil {
		return err
	}
	// RBD images are asked of the cluster; one that does not answer leaves
	// their rows without figures, and the command fails after the table.
	cluster, cerr := connectCeph(inv)
	defer closeCeph(cluster)
	cl := rbdCluster(cluster)
	rel := func(p string) string { return strings.TrimPrefix(p, inv.Server.DataDir+"/") }
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tKIND\tFROM\tPATH\tSIZE\tALLOCATED\tEXTENTS")
	for _, img := range inv.Images {
		if img.RBD != "" {
			size, used, parent := rbdColumns(cl, img.RBD, 0)
			fmt.Fprintf(tw, "%s\tgolden\t-\trbd:%s\t%s\t%s\t%s\n", img.Name, img.RBD, size, used, parent)
			continue
		}
		size, alloc := sizeColumns(img.Path, 0)
		fmt.Fprintf(tw, "%s\tgolden\t-\t%s\t%s\t%s\t%s\n", img.Name, rel(img.Path), size, alloc, sharing(img.Path, false))
	}
	for i := range inv.Hosts {
		h := &inv.Hosts[i]
		if h.Root == nil {
			continue
		}
		from := h.Root.From
		if from == "" {
			from = "-"
		}
		if h.Root.Device != "" {
			fmt.Fprintf(tw, "%s\troot\t-\t%s\t-\t-\tdevice\n", h.Name, h.Root.Device)
			continue
		}
		want := h.Root.Size.Bytes
		img := inv.ImageByName(h.Root.From)
		if h.Root.RBD != "" {
			if want == 0 && img != nil {
				if gi, err := images.StatRBD(cl, img.RBD); err == nil {
					want = gi.Size // a clone is the golden image's size
				}
			}
			size, used, parent := rbdColumns(cl, h.Root.RBD, want)
			fmt.Fprintf(tw, "%s\troot\t%s\trbd:%s\t%s\t%s\t%s\n", h.Name, from, h.Root.RBD, size, used, parent)
			continue
		}
		if want == 0 && img != nil {
			if fi, err := os.Stat(img.Path); err == nil {
				want = fi.Size() // a clone is the golden image's size
			}
		}
		size, alloc := sizeColumns(h.Root.Image, want)
		fmt.Fprintf(tw, "%s\troot\t%s\t%s\t%s\t%s\t%s\n", h.Name, from, rel(h.Root.Image), size, alloc, sharing(h.Root.Image, h.Root.From != ""))
	}
	// Roots whose host left the inventory: kept, and shown so that the
	// operator decides about them. Only files: an RBD root no host names
	// is not looked for in the cluster.
	orphans, err := images.Orphans(inv)
	for _, p := range orphans {
		size, alloc := sizeColumns(p, 0)
		fmt.Fprintf(tw, "-\torphaned\t-\t%s\t%s\t%s\t%s\n", rel(p), size, alloc, sharing(p, false))
	}
	if ferr := tw.Flush(); ferr != nil {
		return ferr
	}
	return errors.Join(err, cerr)
}

// rbdColumns formats what the cluster tells of an RBD image for the table:
// its provisioned size, what it uses itself (as `rbd du`) and, for a
// clone, its parent. A missing image shows the size it will be made at, and
// "(missing)"; without a cluster the figures are "?".
func rbdColumns(cl images.Cluster, rbd string, want int64) (size, used, parent string) {
	if cl == nil {
		return "?", "?", "?"
	}
	info, err := images.StatRBD(cl, rbd)
	switch {
	case errors.Is(err, os.ErrNotExist) && want > 0:
		return inventory.FormatSize(want), "(missing)", "-"
	case errors.Is(err, os.ErrNotExist):
		return "-", "(missing)", "-"
	case err != nil:
		return "-", "error: " + err.Error(), "-"
	}
	parent = "-"
	if info.Parent != "" {
		parent = "parent " + info.Parent
	}
	return inventory.FormatSize(info.Size), inventory.FormatSize(info.Used), parent
}

// sizeColumns formats images.Usage for a table: a missing image shows the
// size it will be created at, and "(missing)".
func sizeColumns(path string, want int64) (size, allocated string) {
	n, alloc, err := images.Usage(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
		if want > 0 {
			return inventory.FormatSize(want), "(missing)"
		}
		return "-", "(missing)"
	case err != nil && n == 0:
		return "-", "error: " + err.Error()
	case err != nil:
		return inventory.FormatSize(n), "?"
	}
	return inventory.FormatSize(n), inventory.FormatSize(alloc)
}

// sharing says how much of an image shares extents with others (a reflink
// clone with its golden image): "shared 190.0MiB", or for a clone that
// shares nothing "copied".
func sharing(path string, clone bool) string {
	if _, err := os.Stat(path); err != nil {
		return "-"
	}
	n, err := images.Shared(path)
	switch {
	case errors.Is(err, images.ErrNoExtentMap):
		return "?"
	case err != nil:
		return "error: " + err.Error()
	case n > 0:
		return "shared " + inventory.FormatSize(n)
	case clone:
		return "copied"
	}
	return "-"
}

// rootOp is clone or reset of one host's root; cl is the Ceph cluster
// when one of the hosts named has an RBD root.
type rootOp func(ctx context.Context, inv *inventory.Inventory, cl images.Cluster, h *inventory.Host, progress func(done, total int64)) (images.Method, error)

// eachRoot parses args with fs, flags and the hosts they name (with
// --all, where all is not nil, every host whose root is cloned from a
// golden image), and runs the op prepare makes for those hosts over each,
// with a progress display per host, reporting every failure, not only the
// first. A root that is there already when op would clone it is kept, and
// said so.
func eachRoot(verb string, fs *flag.FlagSet, c *commonFlags, all *bool, args []string, stdout, stderr io.Writer, prepare func(*inventory.Inventory, []*inventory.Host, *zap.Logger) (rootOp, error)) error {
	hosts, err := parseArgs(fs, args)
	if err != nil {
		return err
	}
	every := all != nil && *all
	switch {
	case every && len(hosts) > 0:
		fmt.Fprintf(stderr, "netsan image %s: name hosts or --all, not both\n", verb)
		return errUsage
	case !every && len(hosts) == 0:
		fmt.Fprintf(stderr, "netsan image %s: name the hosts whose roots to %s\n", verb, verb)
		return errUsage
	}
	inv, log, err := imageSetup(*c, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	var targets []*inventory.Host
	if every {
		for i := range inv.Hosts {
			if h := &inv.Hosts[i]; h.Root != nil && h.Root.From != "" {
				targets = append(targets, h)
			}
		}
		if len(targets) == 0 {
			fmt.Fprintf(stdout, "no host in %s has a root cloned from a golden image (root.from)\n", inv.File)
			return nil
		}
	} else if targets, err = namedHosts(inv, hosts); err != nil {
		return err
	}
	op, err := prepare(inv, targets, log)
	if err != nil {
		return err
	}
	var cluster *ceph.Cluster
	if slices.ContainsFunc(targets, func(h *inventory.Host) bool { return h.Root != nil && h.Root.RBD != "" }) {
		if cluster, err = connectCeph(inv); err != nil {
			return err
		}
		defer closeCeph(cluster)
	}
	ctx, _, stop := signalContext(log)
	defer stop()
	var errs []error
	for _, h := range targets {
		p := newProgress(stderr, log, h.Name, verb)
		m, err := op(ctx, inv, rbdCluster(cluster), h, p.update)
		p.finish()
		switch {
		case errors.Is(err, os.ErrExist):
			fmt.Fprintf(stdout, "%s: %s exists; kept (netsan image reset %s replaces it)\n", h.Name, h.Root.Backing(), h.Name)
		case err != nil:
			errs = append(errs, err)
		default:
			fmt.Fprintf(stdout, "%s: %s %s from %s (%s)\n", h.Name, pastTense(verb), h.Root.Backing(), h.Root.From, m)
		}
	}
	return errors.Join(errs...)
}

// namedHosts resolves every name before anything is done: an unknown or
// repeated name refuses the whole command, so that no host is cloned or
// reset while the operator believes another one was too.
func namedHosts(inv *inventory.Inventory, names []string) ([]*inventory.Host, error) {
	var (
		out  []*inventory.Host
		errs []error
		seen = make(map[string]bool, len(names))
	)
	for _, name := range names {
		h := inv.HostByName(name)
		switch {
		case h == nil:
			errs = append(errs, fmt.Errorf("no host %q in %s", name, inv.File))
		case seen[h.Name]:
			errs = append(errs, fmt.Errorf("host %q named twice", name))
		default:
			seen[h.Name] = true
			out = append(out, h)
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%w; nothing done", errors.Join(errs...))
	}
	return out, nil
}

func pastTense(verb string) string {
	if verb == "clone" {
		return "cloned"
	}
	return verb // "reset"
}

func imageClone(args []string, stdout, stderr io.Writer) error {
	var c commonFlags
	fs := newFlagSet("image clone", stderr, &c)
	all := fs.Bool("all", false, "every host whose root is cloned from a golden image (root.from)")
	return eachRoot("clone", fs, &c, all, args, stdout, stderr, func(*inventory.Inventory, []*inventory.Host, *zap.Logger) (rootOp, error) {
		return images.CloneRoot, nil
	})
}

func imageReset(args []string, stdout, stderr io.Writer) error {
	var c commonFlags
	fs := newFlagSet("image reset", stderr, &c)
	force := fs.Bool("force", false, "log the host's iSCSI sessions out first instead of refusing")
	server := fs.String("server", "", "base URL of the running netsan serve (default: from http.listen)")
	yes := fs.Bool("yes", false, "do not ask: for scripts (without a terminal, reset refuses to go on without it)")
	return eachRoot("reset", fs, &c, nil, args, stdout, stderr, func(inv *inventory.Inventory, hosts []*inventory.Host, log *zap.Logger) (rootOp, error) {
		live, err := liveTarget(inv, *server, *force, log)
		if err != nil {
			return nil, err
		}
		names := make([]string, len(hosts))
		for i, h := range hosts {
			names[i] = h.Name
		}
		q := fmt.Sprintf("Replace the root of %s with a fresh clone? What was written to it is lost.", strings.Join(names, ", "))
		if err := confirm(os.Stdin, stderr, *yes, q); err != nil {
			return nil, err
		}
		return func(ctx context.Context, inv *inventory.Inventory, cl images.Cluster, h *inventory.Host, progress func(done, total int64)) (images.Method, error) {
			return images.ResetRoot(ctx, inv, cl, h, live, *force, progress)
		}, nil
	})
}

// confirm asks question on the terminal, in and w, and is nil when the
// answer is yes, or at once with yes set. Without a terminal to ask on it
// refuses, so that a script does not destroy data by accident: --yes says
// it means to.
func confirm(in *os.File, w io.Writer, yes bool, question string) error {
	if yes {
		return nil
	}
	if !term.IsTerminal(int(in.Fd())) {
		return errors.New("not confirmed: stdin is not a terminal to ask on; add --yes to go on without asking; nothing done")
	}
	if f, ok := w.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
		return errors.New("not confirmed: stderr is not a terminal to ask on; add --yes to go on without asking; nothing done")
	}
	fmt.Fprintf(w, "%s [y/N] ", question)
	answer, _ := bufio.NewReader(in).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(answer)) {
	case "y", "yes":
		return nil
	}
	return errors.New("not confirmed; nothing done")
}

// liveTarget finds the running server's control endpoints: --server, else
// http.listen on the loopback. With HTTP off nothing can be asked, so a
// reset needs --force, the operator's word that the hosts are down.
func liveTarget(inv *inventory.Inventory, server string, force bool, log *zap.Logger) (images.LiveTarget, error) {
	c, err := controlClient(inv, server, 2*time.Minute)
	switch {
	case err != nil:
		return nil, err
	case c == nil && !force:
		return nil, errors.New("http is off, so netsan cannot ask a running server for the hosts' sessions; make sure they are off and use --force")
	case c == nil:
		log.Warn("http is off: not checking for sessions")
		return nil, nil
	}
	return controlTarget{c}, nil
}

// controlClient talks to the running server at --server, else at
// http.listen on the loopback; nil when neither names one (HTTP off).
func controlClient(inv *inventory.Inventory, server string, timeout time.Duration) (*httpd.ControlClient, error) {
	if server == "" {
		if !inv.HTTP.On() {
			return nil, nil
		}
		server = "http://" + loopback(inv.HTTP.Listen)
	}
	u, err := url.Parse(server)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("--server %q: want a URL such as http://127.0.0.1:8080", server)
	}
	return &httpd.ControlClient{Base: strings.TrimSuffix(server, "/"), HTTP: &http.Client{Timeout: timeout}}, nil
}

// controlTarget is images.LiveTarget over the running server's control
// endpoints, its sessions said as httpd.Session says them.
type controlTarget struct{ *httpd.ControlClient }

func (c controlTarget) Sessions(ctx context.Context, iqn string) ([]string, error) {
	ss, err := c.ControlClient.Sessions(ctx, iqn)
	who := make([]string, len(ss))
	for i, s := range ss {
		who[i] = s.String()
	}
	return who, err
}

// loopback turns a listen address into one to connect to: an unspecified
// host (0.0.0.0, ::, empty) becomes 127.0.0.1.
func loopback(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return listen
	}
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}

var imageName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

func imageImport(args []string, stdout, stderr io.Writer) error {
	var c commonFlags
	fs := newFlagSet("image import", stderr, &c)
	pos, err := positional(fs, args, 2, stderr, "netsan image import [-c FILE] FILE NAME")
	if err != nil {
		return err
	}
	src, name := pos[0], pos[1]
	if !imageName.MatchString(name) {
		return fmt.Errorf("image name %q: use letters, digits, '.', '_' and '-'", name)
	}
	inv, log, err := imageSetup(c, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	if inv.ImageByName(name) != nil {
		return fmt.Errorf("%s already has an image named %q", inv.File, name)
	}
	if inv.Ceph != nil {
		return importRBD(inv, log, src, name, stdout, stderr)
	}
	rel := filepath.Join("golden", name+".img")
	dst := filepath.Join(inv.Server.DataDir, rel)
	ctx, _, stop := signalContext(log)
	defer stop()
	p := newProgress(stderr, log, name, "import")
	format, err := images.Import(ctx, src, dst, p.update)
	p.finish()
	if err != nil {
		return err
	}
	size, alloc := sizeColumns(dst, 0)
	fmt.Fprintf(stdout, "imported %s (%s) as %s: %s, %s allocated\nadd to %s:\n\n[[image]]\nname = %q\npath = %q\n",
		src, format, dst, size, alloc, inv.File, name, rel)
	return nil
}

// importRBD imports src as golden image name into the inventory's [ceph]
// cluster, as RBD image pool/name in its default pool.
func importRBD(inv *inventory.Inventory, log *zap.Logger, src, name string, stdout, stderr io.Writer) error {
	cluster, err := connectCeph(inv)
	if err != nil {
		return err
	}
	defer cluster.Close()
	cfg := ceph.Config{Conf: inv.Ceph.Conf, ID: inv.Ceph.ID, Pool: inv.Ceph.Pool}
	dst := ceph.Name{Pool: inv.Ceph.Pool, Image: name}
	ctx, _, stop := signalContext(log)
	defer stop()
	p := newProgress(stderr, log, name, "import")
	format, err := images.ImportRBD(ctx, cluster, cfg, src, dst, p.update)
	p.finish()
	if err != nil {
		return err
	}
	size, used, _ := rbdColumns(cluster, dst.String(), 0)
	fmt.Fprintf(stdout, "imported %s (%s) as rbd %s: %s, %s used\nadd to %s:\n\n[[image]]\nname = %q\nrbd  = %q\n",
		src, format, dst, size, used, inv.File, name, dst.String())
	return nil
}

// imageSetup loads the inventory and makes the logger the image commands
// report progress on when stderr is not a terminal.
func imageSetup(c commonFlags, stderr io.Writer) (*inventory.Inventory, *zap.Logger, error) {
	inv, err := load(configPath(c.config), stderr)
	if err != nil {
		return nil, nil, err
	}
	log, err := newLogger(c.logFormat, c.logLevel, stderr)
	if err != nil {
		return nil, nil, err
	}
	return inv, log, nil
}

// progress shows a long copy: a bar on a terminal, log lines otherwise.
type progress struct {
	w    io.Writer
	desc string
	log  func(done, total int64) // nil on a terminal
	bar  *progressbar.ProgressBar
}

func newProgress(w io.Writer, log *zap.Logger, host, op string) *progress {
	p := &progress{w: w, desc: host + " " + op}
	if f, ok := w.(*os.File); !ok || !term.IsTerminal(int(f.Fd())) {
		p.log = images.LogProgress(log.With(zap.String("host", host), zap.String("op", op)))
	}
	return p
}

func (p *progress) update(done, total int64) {
	if p.log != nil {
		p.log(done, total)
		return
	}
	if p.bar == nil {
		p.bar = progressbar.NewOptions64(total,
			progressbar.OptionSetWriter(p.w),
			progressbar.OptionSetDescription(p.desc),
			progressbar.OptionShowBytes(true),
			progressbar.OptionUseIECUnits(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(p.w) }),
		)
	}
	_ = p.bar.Set64(done)
}

func (p *progress) finish() {
	if p.bar != nil {
		_ = p.bar.Finish()
	}
}
