package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"go.uber.org/zap"
	"golang.org/x/sync/errgroup"

	"github.com/netsan/netsan/ceph"
	"github.com/netsan/netsan/cluster"
	"github.com/netsan/netsan/images"
	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/timeline"
)

// service is the one face every protocol server shows: net/http's
// ListenAndServe/Shutdown, reduced to a context, plus a reload.
type service interface {
	// Serve runs until ctx is cancelled, then drains and returns.
	Serve(ctx context.Context) error
	// Reload swaps in a new, already validated inventory.
	Reload(inv *inventory.Inventory) error
}

type namedService struct {
	name string
	svc  service
}

// reloadDebounce coalesces the burst of events one editor save makes
// (write, chmod, rename of a temp file) into one reload.
const reloadDebounce = 300 * time.Millisecond

// supervisor runs the services of one inventory and reloads them together.
// They run in terms: a single box has one, from start to stop; a gateway of
// a [cluster] has one each time it leads, and none while it stands by.
type supervisor struct {
	path string
	log  *zap.Logger
	// build makes a term's services from the inventory being served.
	build func(*inventory.Inventory) ([]namedService, error)
	// lead calls term whenever this netsan may serve, until ctx ends: nil
	// calls it at once (a single box); a gateway's elector calls it each
	// time the gateway becomes leader, cancelling its context when it stops
	// leading.
	lead func(ctx context.Context, term func(context.Context) error) error
	// loaded, if set, is told of every valid inventory a reload reads,
	// changed or not.
	loaded func(*inventory.Inventory)

	mu       sync.Mutex // serialises reloads and the start of a term
	current  *inventory.Inventory
	services []namedService // the current term's; nil while standing by
	// cluster is the Ceph connection made at start, nil without [ceph]; a
	// reload cannot change it.
	cluster *ceph.Cluster
	// keptLogged holds the roots already logged as kept after their host
	// left the inventory: once per path is enough.
	keptLogged map[string]bool
	// sd tells systemd when serve is ready, reloading and stopping, and
	// pets its watchdog; nil when not started by systemd.
	sd *notifier
	// serving is the STATUS= systemd last had with READY=1.
	serving string
}

func cmdServe(args []string, stderr io.Writer) error {
	var c commonFlags
	fs := newFlagSet("serve", stderr, &c)
	gateway := fs.String("gateway", "", "this gateway's name in a [cluster] of gateways (default: the host name)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(c.logFormat, c.logLevel, stderr)
	if err != nil {
		return err
	}
	defer func() { _ = log.Sync() }()
	path := configPath(c.config)
	inv, ps, err := loadInventory(path)
	for _, p := range ps {
		if p.Warning {
			log.Warn(p.Message, zap.String("at", p.Where()))
		} else {
			log.Error(p.Message, zap.String("at", p.Where()))
		}
	}
	if errors.As(err, new(*inventory.InvalidError)) {
		return errInvalid
	}
	if err != nil {
		return err
	}
	ctx, hup, stop := signalContext(log)
	defer stop()
	// One connection to the cluster for the life of the process: every RBD
	// image is opened through it.
	cc, err := connectCeph(inv)
	if err != nil {
		log.Error("ceph cluster unreachable", zap.String("conf", inv.Ceph.Conf), zap.String("id", inv.Ceph.ID), zap.Error(err))
		return err
	}
	defer closeCeph(cc)
	if cc != nil {
		log.Info("connected to ceph", zap.String("conf", inv.Ceph.Conf), zap.String("id", inv.Ceph.ID))
	}
	sd, err := newNotifier(log)
	if err != nil {
		log.Warn("systemd will not hear that netsan is ready", zap.Error(err))
	}
	defer sd.close()
	sup := &supervisor{path: path, log: log, current: inv, cluster: cc, sd: sd}
	reg := newRegistry()
	col := images.NewCollector(sup.inventory)
	col.Cluster = rbdCluster(cc)
	if err := reg.Register(col); err != nil {
		return err
	}
	var status func() *cluster.Status
	// Boots are told across terms and reloads: a machine's story goes on.
	events := timeline.New(0, 0)
	if inv.Cluster != nil {
		// A gateway serves only while it leads; the elector runs its terms.
		el, err := newElector(inv, cc, *gateway, log)
		if err != nil {
			return err
		}
		if err := reg.Register(cluster.NewCollector(el)); err != nil {
			return err
		}
		sup.lead, status = el.Run, clusterStatus(el)
		sup.loaded = func(inv *inventory.Inventory) {
			if d, err := inventoryDigest(inv.File); err == nil {
				el.SetInventory(d)
			}
		}
	}
	sup.build = func(inv *inventory.Inventory) ([]namedService, error) {
		// Roots cloned from golden images must exist before the target
		// opens them.
		if err := images.Ensure(ctx, inv, rbdCluster(cc), log); err != nil {
			return nil, err
		}
		return buildServices(inv, cc, log, reg, status, events)
	}
	log.Info("netsan starting", zap.String("version", version), zap.String("inventory", path),
		zap.Int("hosts", len(inv.Hosts)), zap.Int("targets", len(inv.Targets)))
	warnLoaders(inv, log)
	err = sup.run(ctx, hup)
	log.Info("netsan stopped")
	return err
}

// run serves until ctx is cancelled or a service fails, reloading on SIGHUP
// (hup) and on edits of the inventory file.
//
// systemd hears READY=1 when every listener of a single box's term is up;
// a gateway is ready as soon as it campaigns, since it may stand by for
// ever and systemd would otherwise fail its start.
func (s *supervisor) run(ctx context.Context, hup <-chan os.Signal) error {
	g, ctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if s.lead == nil {
			return s.term(ctx)
		}
		s.notifyReady("standing by: campaigning to lead the [cluster]")
		return s.lead(ctx, s.term)
	})
	g.Go(func() error { return s.watch(ctx, hup) })
	g.Go(func() error { return s.sd.pet(ctx) })
	g.Go(func() error {
		<-ctx.Done()
		s.sd.stopping()
		return nil
	})
	return g.Wait()
}

// notifyReady sends READY=1 with status, which a reload sends again.
func (s *supervisor) notifyReady(status string) {
	s.mu.Lock()
	s.serving = status
	s.mu.Unlock()
	s.sd.ready(status)
}

// listening is a service that tells when it answers: ListenAddrs blocks
// until its Serve listens and returns the addresses, nil if it could not.
type listening interface{ ListenAddrs() []net.Addr }

// whenListening calls ready with what every service listens on, once they
// all do; not at all if one could not listen (its Serve fails the term).
func whenListening(services []namedService, ready func(string)) {
	var on []string
	for _, ns := range services {
		l, ok := ns.svc.(listening)
		if !ok {
			continue
		}
		addrs := l.ListenAddrs()
		if addrs == nil {
			return
		}
		for _, a := range addrs {
			on = append(on, ns.name+" "+a.String())
		}
	}
	ready("serving " + strings.Join(on, ", "))
}

// term builds the services from the inventory being served and runs them
// until ctx ends or one fails, which stops the others.
func (s *supervisor) term(ctx context.Context) error {
	s.mu.Lock()
	services, err := s.build(s.current)
	s.services = services
	s.mu.Unlock()
	if err != nil {
		return err
	}
	defer func() {
		s.mu.Lock()
		s.services = nil
		s.mu.Unlock()
	}()
	g, ctx := errgroup.WithContext(ctx)
	for _, ns := range services {
		g.Go(func() error {
			err := ns.svc.Serve(ctx)
			if err != nil && ctx.Err() == nil {
				return fmt.Errorf("%s: %w", ns.name, err)
			}
			return nil
		})
	}
	g.Go(func() error {
		whenListening(services, s.notifyReady)
		return nil
	})
	err = g.Wait()
	if s.lead != nil {
		s.sd.send("STATUS=standing by: campaigning to lead the [cluster]")
	}
	return err
}

// watch turns SIGHUP and edits of the inventory into reloads. It watches the
// directory, not the file, because editors replace files by renaming.
func (s *supervisor) watch(ctx context.Context, hup <-chan os.Signal) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", s.path, err)
	}
	defer w.Close()
	abs, err := filepath.Abs(s.path)
	if err != nil {
		return fmt.Errorf("watch %s: %w", s.path, err)
	}
	if err := w.Add(filepath.Dir(abs)); err != nil {
		return fmt.Errorf("watch %s: %w", s.path, err)
	}
	debounce := time.NewTimer(time.Hour)
	debounce.Stop()
	defer debounce.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case sig := <-hup:
			logSignal(s.log, sig, "reload")
			_ = s.reload(ctx)
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			if filepath.Clean(ev.Name) == abs && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename) != 0 {
				debounce.Reset(reloadDebounce)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			s.log.Warn("inventory watch", zap.Error(err))
		case <-debounce.C:
			s.log.Info("inventory changed: reloading", zap.String("inventory", s.path))
			_ = s.reload(ctx)
		}
	}
}

// reload validates the file first; only a valid inventory reaches the
// services, and a bad edit leaves the old one serving.
func (s *supervisor) reload(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Before the first READY=1 systemd is still waiting for the start.
	if status := s.serving; status != "" {
		s.sd.reloading()
		defer s.sd.ready(status)
	}
	inv, ps, err := loadInventory(s.path)
	if err != nil {
		var invalid *inventory.InvalidError
		if errors.As(err, &invalid) {
			for _, p := range invalid.Problems.Errors() {
				s.log.Error("reload refused: "+p.Message, zap.String("at", p.Where()))
			}
		} else {
			s.log.Error("reload refused", zap.Error(err))
		}
		s.log.Warn("still serving the previous inventory")
		return err
	}
	for _, p := range ps.Warnings() {
		s.log.Warn(p.Message, zap.String("at", p.Where()))
	}
	if s.loaded != nil {
		s.loaded(inv)
	}
	changes := inventory.Diff(s.current, inv)
	if changes.Empty() {
		s.log.Info("reload: no changes")
		return nil
	}
	// Sections taken up once at start: open images hold the Ceph
	// connection, and the elector campaigns on [cluster]'s interface and
	// lease. A standby refuses them too, or its next term would serve them.
	for _, r := range []struct {
		changed bool
		section string
	}{{changes.Ceph, "ceph"}, {changes.Cluster, "cluster"}} {
		if r.changed {
			s.log.Error("reload refused: ["+r.section+"] changed; restart netsan to take it up", zap.String("at", inv.Problemf(r.section, "").Where()))
			s.log.Warn("still serving the previous inventory")
			return fmt.Errorf("[%s] changed: needs a restart", r.section)
		}
	}
	if s.services == nil {
		// Standing by: the next term builds from it.
		s.current = inv
		s.log.Info("reloaded while standing by", zap.String("changes", changes.String()))
		return nil
	}
	// A new host's root is cloned before the target is told about it, or
	// the target would create it empty.
	if err := images.Ensure(ctx, inv, rbdCluster(s.cluster), s.log); err != nil {
		s.log.Error("reload refused: making roots and LUNs", zap.Error(err))
		s.log.Warn("still serving the previous inventory")
		return err
	}
	var errs []error
	for _, ns := range s.services {
		if err := ns.svc.Reload(inv); err != nil {
			s.log.Error("reload failed", zap.String("service", ns.name), zap.Error(err))
			errs = append(errs, fmt.Errorf("%s: %w", ns.name, err))
		}
	}
	s.logKept(images.Dropped(s.current, inv))
	s.current = inv
	s.log.Info("reloaded", zap.String("changes", changes.String()))
	return errors.Join(errs...)
}

// logKept warns, once per path, of roots whose host the reload removed:
// netsan keeps them on disk, and `netsan image list` shows them as orphaned.
func (s *supervisor) logKept(kept []images.Kept) {
	for _, k := range kept {
		if s.keptLogged[k.Path] {
			continue
		}
		if s.keptLogged == nil {
			s.keptLogged = make(map[string]bool)
		}
		s.keptLogged[k.Path] = true
		s.log.Warn("root kept on disk: its host left the inventory (netsan image list shows it as orphaned)",
			zap.String("host", k.Host), zap.String("path", k.Path))
	}
}

// inventory returns the inventory being served.
func (s *supervisor) inventory() *inventory.Inventory {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.current
}
