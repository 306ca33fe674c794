package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/netsan/netsan/inventory/inventorytest"
	"github.com/netsan/netsan/netsantest"
)

// TestCrashKeepsAcknowledgedWrites kills netsan with SIGKILL at random
// moments while QEMU's iSCSI driver writes with FUA, restarts it, and reads
// back every write the target had acknowledged. Each round writes its own
// blocks with its own pattern, so an acknowledged block has exactly one right
// content; blocks in flight at the kill may hold either.
func TestCrashKeepsAcknowledgedWrites(t *testing.T) {
	netsantest.NeedTools(t, "qemu-io", "stdbuf", "iscsi-inq")
	const (
		rounds    = 20
		perRound  = 256
		blockSize = 4096
	)
	dir := t.TempDir()
	bin := netsantest.Binary(t)
	port := netsantest.FreePort(t, "tcp")
	const iqn = "iqn.2026-11.example.test:node1"
	path := filepath.Join(dir, "netsan.toml")
	writeFile(t, path, inventorytest.Loopback("data", 0, port, "iqn.2026-11.example.test")+fmt.Sprintf(`[[host]]
name = "node1"
mac = "52:54:00:00:00:01"
root = { image = "roots/node1.img", size = "%dKiB" }
`, rounds*perRound*blockSize/1024))
	image := fmt.Sprintf("driver=iscsi,transport=tcp,portal=127.0.0.1:%d,target=%s,lun=0,initiator-name=%s", port, iqn, iqn)

	log := netsantest.NewLog(t, "netsan")
	start := func() *netsantest.Process {
		p := netsantest.Start(t, exec.Command(bin, "serve", "-c", path, "--log-format", "json"), log)
		url := fmt.Sprintf("iscsi://127.0.0.1:%d/%s/0", port, iqn)
		netsantest.WaitFor(t, "iSCSI up", 20*time.Second, func() bool { return exec.Command("iscsi-inq", "-i", iqn, url).Run() == nil })
		return p
	}
	wrote := regexp.MustCompile(`^wrote \d+/\d+ bytes at offset (\d+)`)
	acked := map[int64]byte{} // offset → pattern of its acknowledged write
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	total := 0
	for r := 0; r < rounds; r++ {
		p := start()
		pattern := byte(r + 1)
		args := []string{"-oL", "qemu-io", "--image-opts", image}
		for i := 0; i < perRound; i++ {
			args = append(args, "-c", fmt.Sprintf("write -f -P 0x%02x %d %d", pattern, int64(r*perRound+i)*blockSize, blockSize))
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		writer := exec.CommandContext(ctx, "stdbuf", args...)
		out, err := writer.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := writer.Start(); err != nil {
			t.Fatal(err)
		}
		killed := make(chan struct{})
		go func() {
			defer close(killed)
			time.Sleep(time.Duration(20+rng.IntN(400)) * time.Millisecond)
			_ = p.Cmd.Process.Kill() // SIGKILL: no flush, no logout
			// Let qemu-io print what was acknowledged before the kill.
			time.Sleep(200 * time.Millisecond)
			_ = writer.Process.Kill()
		}()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if m := wrote.FindStringSubmatch(sc.Text()); m != nil {
				off, _ := strconv.ParseInt(m[1], 10, 64)
				acked[off] = pattern
				total++
			}
		}
		<-killed
		_ = writer.Wait()
		cancel()
		<-p.Done()
	}
	if total == 0 {
		t.Fatal("no write was acknowledged in any round; the test proves nothing")
	}

	// Restart and read back every acknowledged block.
	start()
	args := []string{"--image-opts", image}
	for off, p := range acked {
		args = append(args, "-c", fmt.Sprintf("read -P 0x%02x %d %d", p, off, blockSize))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	res, err := exec.CommandContext(ctx, "qemu-io", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("qemu-io read back: %v\n%s", err, res)
	}
	if n := strings.Count(string(res), "Pattern verification failed"); n > 0 {
		t.Fatalf("%d of %d acknowledged writes lost after %d kills:\n%s", n, len(acked), rounds, res)
	}
	if got := strings.Count(string(res), "read 4096/4096 bytes"); got != len(acked) {
		t.Fatalf("read back %d of %d blocks:\n%s", got, len(acked), res)
	}
	t.Logf("%d kills; %d acknowledged FUA writes, all read back", rounds, len(acked))
}
