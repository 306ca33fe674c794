package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/netsan/netsan/inventory"
	"github.com/netsan/netsan/netsantest"
)

const inv1 = `
[server]
address = "198.18.0.1"
data_dir = "data"
[iscsi]
base_iqn = "iqn.2026-11.example.lab"
[[host]]
name = "node1"
mac = "52:54:00:00:00:01"
boot = "local"
`

// recorder is a service that records the inventories it is given.
type recorder struct {
	mu      sync.Mutex
	reloads []*inventory.Inventory
	served  chan struct{}
}

func (r *recorder) Serve(ctx context.Context) error {
	close(r.served)
	<-ctx.Done()
	return nil
}

func (r *recorder) Reload(inv *inventory.Inventory) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.reloads = append(r.reloads, inv)
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.reloads)
}

func (r *recorder) last() *inventory.Inventory {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.reloads[len(r.reloads)-1]
}

// writeFile replaces the inventory the way editors do: a new file renamed
// over the old one.
func writeFile(t *testing.T, path, body string) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func startSupervisor(t *testing.T) (path string, rec *recorder, sup *supervisor, hup chan os.Signal, logs *observer.ObservedLogs, stop func() error) {
	t.Helper()
	path = filepath.Join(t.TempDir(), "netsan.toml")
	writeFile(t, path, inv1)
	inv, _, err := inventory.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	rec = &recorder{served: make(chan struct{})}
	sup = &supervisor{path: path, log: zap.New(core), build: services(namedService{"rec", rec}), current: inv}
	hup = make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.run(ctx, hup) }()
	<-rec.served
	// The watcher starts with run; give it a moment to register the directory.
	time.Sleep(100 * time.Millisecond)
	var once sync.Once
	var runErr error
	stop = func() error {
		once.Do(func() { cancel(); runErr = <-done })
		return runErr
	}
	t.Cleanup(func() { _ = stop() })
	return path, rec, sup, hup, logs, stop
}

func TestReloadOnEdit(t *testing.T) {
	path, rec, sup, _, logs, stop := startSupervisor(t)
	defer stop()

	// A good edit: a new host appears, the services get the new inventory.
	writeFile(t, path, inv1+"[[host]]\nname = \"node2\"\nmac = \"52:54:00:00:00:02\"\nboot = \"shell\"\n")
	netsantest.WaitFor(t, "reload after a good edit", 20*time.Second, func() bool { return rec.count() == 1 })
	if rec.last().HostByName("node2") == nil || sup.inventory().HostByName("node2") == nil {
		t.Fatal("node2 not in the reloaded inventory")
	}
	if logs.FilterMessage("reloaded").FilterField(zap.String("changes", "hosts +node2")).Len() != 1 {
		t.Errorf("no 'reloaded' log with the change: %v", logs.All())
	}

	// A bad edit: refused with its position, the previous inventory keeps serving.
	writeFile(t, path, inv1+"[[host]]\nname = \"node2\"\nmac = \"not-a-mac\"\n")
	netsantest.WaitFor(t, "refusal of a bad edit", 20*time.Second, func() bool { return logs.FilterMessageSnippet("reload refused").Len() > 0 })
	refused := logs.FilterMessageSnippet("reload refused").All()[0]
	if at := refused.ContextMap()["at"]; !strings.HasSuffix(at.(string), "netsan.toml:13:1") {
		t.Errorf("refusal at %v, want …netsan.toml:13:1", at)
	}
	time.Sleep(2 * reloadDebounce)
	if rec.count() != 1 {
		t.Errorf("services reloaded %d times; a bad edit must not reach them", rec.count())
	}
	if sup.inventory().HostByName("node2") == nil {
		t.Error("the previous inventory was not kept")
	}

	// A file that cannot be read: refused with the reading's error, not
	// as a list of problems.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := sup.reload(context.Background()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("reload of a removed file: %v", err)
	}
	if got := logs.FilterMessage("reload refused").All(); len(got) == 0 || !strings.Contains(fmt.Sprint(got[len(got)-1].ContextMap()["error"]), "no such file") {
		t.Errorf("no 'reload refused' log with the reading's error: %v", got)
	}
	if sup.inventory().HostByName("node2") == nil {
		t.Error("the previous inventory was not kept")
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestReloadOnSIGHUP(t *testing.T) {
	path, rec, _, hup, logs, stop := startSupervisor(t)
	defer stop()
	// Same content: SIGHUP reloads, finds nothing to change, services untouched.
	hup <- syscall.SIGHUP
	netsantest.WaitFor(t, "no-change reload", 20*time.Second, func() bool { return logs.FilterMessage("reload: no changes").Len() == 1 })
	if rec.count() != 0 {
		t.Fatal("services reloaded for an unchanged inventory")
	}
	// Edit without waiting for the watcher's debounce; SIGHUP picks it up too.
	writeFile(t, path, strings.Replace(inv1, `boot = "local"`, `boot = "menu"`, 1))
	hup <- syscall.SIGHUP
	netsantest.WaitFor(t, "reload on SIGHUP", 20*time.Second, func() bool { return rec.count() >= 1 })
	if got := rec.last().HostByName("node1").Boot; got != "menu" {
		t.Errorf("boot = %q after reload", got)
	}
}

func TestShutdownLeavesNoGoroutine(t *testing.T) {
	before := runtime.NumGoroutine()
	for i := 0; i < 3; i++ {
		_, _, _, _, _, stop := startSupervisor(t)
		if err := stop(); err != nil {
			t.Fatal(err)
		}
	}
	netsantest.WaitFor(t, "goroutines to end", 20*time.Second, func() bool { return runtime.NumGoroutine() <= before })
}

func TestServiceFailureStopsAll(t *testing.T) {
	path := filepath.Join(t.TempDir(), "netsan.toml")
	writeFile(t, path, inv1)
	inv, _, _ := inventory.Load(path)
	rec := &recorder{served: make(chan struct{})}
	sup := &supervisor{path: path, log: zap.NewNop(), current: inv, build: services(
		namedService{"rec", rec}, namedService{"broken", failing{}},
	)}
	err := sup.run(context.Background(), make(chan os.Signal))
	if err == nil || !strings.Contains(err.Error(), "broken: address already in use") {
		t.Fatalf("run = %v", err)
	}
}

// services builds every term from the same services.
func services(ss ...namedService) func(*inventory.Inventory) ([]namedService, error) {
	return func(*inventory.Inventory) ([]namedService, error) { return ss, nil }
}

type failing struct{}

func (failing) Serve(context.Context) error       { return syscall.EADDRINUSE }
func (failing) Reload(*inventory.Inventory) error { return nil }

// TestReloadLogsKeptRoots: a reload that removes a host whose root is on
// disk warns once, with the path; the root stays.
func TestReloadLogsKeptRoots(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "netsan.toml")
	host := func(n int) string {
		return fmt.Sprintf("[[host]]\nname = \"node%d\"\nmac = \"52:54:00:00:00:%02x\"\nroot = { image = \"roots/node%d.img\", size = \"1MiB\" }\n", n, n, n)
	}
	root2 := filepath.Join(dir, "data", "roots", "node2.img")
	if err := os.MkdirAll(filepath.Dir(root2), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(root2, make([]byte, 4096), 0o644); err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, inv1+host(2)+host(3))
	inv, _, err := inventory.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.InfoLevel)
	sup := &supervisor{path: path, log: zap.New(core), services: []namedService{{"rec", &recorder{}}}, current: inv}
	kept := func() []string {
		var out []string
		for _, e := range logs.FilterLevelExact(zap.WarnLevel).FilterMessageSnippet("root kept").All() {
			out = append(out, e.ContextMap()["host"].(string)+" "+e.ContextMap()["path"].(string))
		}
		return out
	}
	for i, step := range []struct {
		inv  string
		kept []string
	}{
		{inv1 + host(3), []string{"node2 " + root2}}, // node2 removed: its root is on disk
		{inv1, []string{"node2 " + root2}},           // node3 removed: it never had a root on disk
		{inv1 + host(2), []string{"node2 " + root2}},
		{inv1, []string{"node2 " + root2}}, // node2 removed again: once per path
	} {
		writeFile(t, path, step.inv)
		if err := sup.reload(t.Context()); err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		if got := kept(); strings.Join(got, ";") != strings.Join(step.kept, ";") {
			t.Errorf("after reload %d the kept roots logged are %q, want %q", i, got, step.kept)
		}
	}
	if _, err := os.Stat(root2); err != nil {
		t.Errorf("node2's root: %v", err)
	}
}

// TestTerms: a gateway serves only in its terms as leader. A reload while
// it stands by changes what the next term builds and reaches no service;
// each term builds its own services from the inventory of the moment, and
// a reload during a term reaches that term's services.
func TestTerms(t *testing.T) {
	path := filepath.Join(t.TempDir(), "netsan.toml")
	writeFile(t, path, inv1)
	inv, _, err := inventory.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	host := func(n int) string {
		return fmt.Sprintf("[[host]]\nname = \"node%d\"\nmac = \"52:54:00:00:00:%02x\"\nboot = \"local\"\n", n, n)
	}
	core, logs := observer.New(zap.InfoLevel)
	built := make(chan *recorder, 2)
	sup := &supervisor{path: path, log: zap.New(core), current: inv}
	sup.build = func(inv *inventory.Inventory) ([]namedService, error) {
		r := &recorder{served: make(chan struct{}), reloads: []*inventory.Inventory{inv}}
		built <- r
		return []namedService{{"rec", r}}, nil
	}
	elected, stepDown := make(chan struct{}), make(chan struct{})
	sup.lead = func(ctx context.Context, term func(context.Context) error) error {
		for range 2 {
			select {
			case <-elected:
			case <-ctx.Done():
				return nil
			}
			tctx, cancel := context.WithCancel(ctx)
			go func() {
				defer cancel()
				select {
				case <-stepDown:
				case <-tctx.Done():
				}
			}()
			err := term(tctx)
			cancel()
			if err != nil {
				return err
			}
		}
		<-ctx.Done()
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sup.run(ctx, make(chan os.Signal)) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	// Standing by: a reload is taken in, and nothing is built.
	writeFile(t, path, inv1+host(2))
	if err := sup.reload(ctx); err != nil {
		t.Fatal(err)
	}
	if logs.FilterMessage("reloaded while standing by").Len() != 1 {
		t.Errorf("no 'reloaded while standing by' log: %v", logs.All())
	}
	select {
	case <-built:
		t.Fatal("services built while standing by")
	default:
	}

	// First term: built from the inventory reloaded while standing by.
	elected <- struct{}{}
	r1 := <-built
	<-r1.served
	if r1.last().HostByName("node2") == nil {
		t.Error("the first term was not built from the inventory reloaded while standing by")
	}
	writeFile(t, path, inv1+host(2)+host(3))
	if err := sup.reload(ctx); err != nil {
		t.Fatal(err)
	}
	if r1.count() != 2 || r1.last().HostByName("node3") == nil {
		t.Errorf("a reload during the term did not reach its services (%d inventories)", r1.count())
	}

	// Stepping down ends the term; the next one builds new services.
	stepDown <- struct{}{}
	netsantest.WaitFor(t, "the term to end", 10*time.Second, func() bool {
		sup.mu.Lock()
		defer sup.mu.Unlock()
		return sup.services == nil
	})
	elected <- struct{}{}
	r2 := <-built
	<-r2.served
	if r2 == r1 || r2.last().HostByName("node3") == nil {
		t.Error("the second term did not build its own services from the current inventory")
	}
}
