// Command demo is `make demo`: it makes a lab in a network namespace, runs
// netsan in it, powers on one diskless BIOS machine and shows its serial
// console live as it boots from its root LUN over iSCSI; then it removes
// everything it made. lab/demo.sh installs what it needs and runs it.
//
//	demo -netsan ./netsan [-image build/lab/golden.img] [-uefi] [-keep]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/netsan/netsan/lab"
)

func main() {
	bin := flag.String("netsan", "./netsan", "netsan binary")
	image := flag.String("image", "", "golden image (default: build it with lab/mkimage.sh)")
	uefi := flag.Bool("uefi", false, "power on an OVMF (UEFI) machine instead of SeaBIOS")
	keep := flag.Bool("keep", false, "keep the lab directory (logs, images) afterwards")
	timeout := flag.Duration("timeout", 5*time.Minute, "give up on the boot after this long")
	flag.Parse()
	if err := run(*bin, *image, *uefi, *keep, *timeout); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

func run(bin, image string, uefi, keep bool, timeout time.Duration) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := errors.Join(lab.Available(), lab.QEMUAvailable()); err != nil {
		return err
	}
	bin, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	if image == "" {
		say("building the golden image (lab/mkimage.sh; cached in build/lab)")
		if image, err = lab.GoldenImage(ctx); err != nil {
			return err
		}
	}
	dir, err := os.MkdirTemp("", "netsan-demo-")
	if err != nil {
		return err
	}
	if keep {
		defer say("kept " + dir)
	} else {
		defer os.RemoveAll(dir)
	}

	l, err := lab.New(ctx, dir, "demo")
	if err != nil {
		return err
	}
	defer func() {
		say("cleaning up: namespace " + l.Name)
		if err := l.Close(); err != nil {
			fmt.Fprintln(os.Stderr, "demo:", err)
		}
	}()

	h := lab.NetsanHost{Boot: "san", Host: lab.Host{
		Name: "node1", MAC: "52:54:00:4e:53:01", IP: "198.18.0.11",
		Initiator: "iqn.2026-11.example.lab:node1", Target: "iqn.2026-11.example.lab:node1",
		Image: "roots/node1.img",
	}}
	inv := lab.Inventory{
		DataDir: filepath.Join(dir, "data"),
		BaseIQN: "iqn.2026-11.example.lab",
		Golden:  "golden/golden.img",
		Hosts:   []lab.NetsanHost{h},
	}
	for _, dst := range []string{inv.Golden, h.Image} {
		if err := lab.Clone(image, filepath.Join(inv.DataDir, dst)); err != nil {
			return err
		}
	}
	say(fmt.Sprintf("namespace %s: bridge %s %s; starting netsan (log: %s)", l.Name, lab.Bridge, lab.Prefix, filepath.Join(dir, "netsan.log")))
	if _, err := l.StartNetsan(ctx, bin, inv); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "\n%s\n", inv.TOML())

	fw := lab.BIOS
	if uefi {
		fw = lab.UEFI
	}
	say(fmt.Sprintf("powering on %s (%s, MAC %s, no disk); its serial console follows", h.Name, fw, h.MAC))
	g, err := l.Boot(ctx, lab.Machine{Name: h.Name, MAC: h.MAC, UUID: "4e455453-414e-4c41-4200-5254004e5301", Firmware: fw})
	if err != nil {
		return err
	}
	defer g.Stop()

	bctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	follow := make(chan error, 1)
	go func() { follow <- stream(bctx, g.Serial, os.Stdout, g.Done()) }()
	line, err := g.WaitLine(bctx, lab.MarkerBoot)
	if err != nil {
		cancel()
		<-follow
		return err
	}
	if err := g.Wait(bctx); err != nil {
		cancel()
		<-follow
		return err
	}
	<-follow
	say(fmt.Sprintf("%s booted from its root LUN over iSCSI in %v:\n  %s", h.Name, g.Elapsed(), line))
	return nil
}

// stream copies the serial file to w as it grows, until the guest exits and
// the file is drained, or ctx ends.
func stream(ctx context.Context, path string, w io.Writer, exited <-chan struct{}) error {
	var f *os.File
	for f == nil {
		var err error
		if f, err = os.Open(path); err != nil {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(100 * time.Millisecond):
			}
		}
	}
	defer f.Close()
	buf := make([]byte, 32<<10)
	for {
		n, err := f.Read(buf)
		if n > 0 {
			_, _ = w.Write(buf[:n])
			continue
		}
		if err != nil && err != io.EOF {
			return err
		}
		select {
		case <-exited:
			// One last read catches what was written just before exit.
			if n, _ := f.Read(buf); n > 0 {
				_, _ = w.Write(buf[:n])
				continue
			}
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func say(s string) { fmt.Fprintf(os.Stderr, "\033[1m==> %s\033[0m\n", s) }
