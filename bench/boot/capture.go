package main

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/netsan/netsan/lab"
)

// startCapture records every packet on the lab's bridge into path until the
// lab closes or the returned process is stopped.
func startCapture(ctx context.Context, l *lab.Lab, path string) (*lab.Proc, error) {
	p, err := l.Start("dumpcap", "dumpcap", "-q", "-i", lab.Bridge, "-w", path)
	if err != nil {
		return nil, err
	}
	// dumpcap creates the file once it is capturing.
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		if _, err := os.Stat(path); err == nil {
			return p, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return nil, fmt.Errorf("dumpcap wrote no %s: %s", path, readTail(p.Log))
		}
	}
}

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	if len(b) > 1024 {
		b = b[len(b)-1024:]
	}
	return string(bytes.TrimSpace(b))
}

// scsiCmd is one SCSI command of a capture, as the bridge saw it.
type scsiCmd struct {
	at      time.Duration // the command PDU complete on the bridge (from QEMU start)
	op      byte          // CDB opcode
	length  uint32        // Expected Data Transfer Length
	dataIn  int           // Data-In PDUs
	done    time.Duration // its status (last Data-In with S, or SCSI Response) complete
	answerd bool
}

// iscsiTrace reads a capture's iSCSI PDUs with tshark and pairs each SCSI
// Command with the PDU that carries its status. It writes them, one line a
// command, to dir/iscsi-commands.tsv and returns them in order. Times are
// from origin, the guest's start.
func iscsiTrace(ctx context.Context, pcap string, origin time.Time) ([]scsiCmd, error) {
	out, err := exec.CommandContext(ctx, "tshark", "-r", pcap, "-Y", "iscsi",
		"-T", "fields", "-E", "separator=\t", "-E", "occurrence=a", "-E", "aggregator=,",
		"-e", "frame.time_epoch", "-e", "tcp.stream", "-e", "iscsi.opcode", "-e", "iscsi.flags",
		"-e", "iscsi.initiatortasktag", "-e", "iscsi.scsicommand.expecteddatatransferlength",
		"-e", "scsi_sbc.opcode", "-e", "scsi.spc.opcode").Output()
	if err != nil {
		return nil, fmt.Errorf("tshark %s: %w", pcap, err)
	}
	res := pairCommands(out, origin)
	var tsv strings.Builder
	tsv.WriteString("at_s\top\tlength\tdata_in_pdus\ttarget_ms\n")
	for _, c := range res {
		fmt.Fprintf(&tsv, "%.6f\t0x%02x\t%d\t%d\t%.3f\n", c.at.Seconds(), c.op, c.length, c.dataIn, ms(c.done-c.at))
	}
	return res, os.WriteFile(filepath.Join(filepath.Dir(pcap), "iscsi-commands.tsv"), []byte(tsv.String()), 0o644)
}

// pairCommands reads tshark's fields (see iscsiTrace), one frame a line
// with the values of each PDU in it comma-separated, and pairs each SCSI
// Command with the PDU carrying its status, on the same connection.
func pairCommands(out []byte, origin time.Time) []scsiCmd {
	type key struct {
		stream string
		itt    string
	}
	open := map[key]*scsiCmd{}
	var cmds []*scsiCmd
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Split(sc.Text(), "\t")
		for len(f) < 8 {
			f = append(f, "")
		}
		sec, frac, _ := strings.Cut(f[0], ".")
		s, err1 := strconv.ParseInt(sec, 10, 64)
		ns, err2 := strconv.ParseInt((frac + "000000000")[:9], 10, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		at := time.Unix(s, ns).Sub(origin)
		ops, flags, itts := strings.Split(f[2], ","), strings.Split(f[3], ","), strings.Split(f[4], ",")
		// The CDB's opcode is SBC's (reads, writes) or SPC's (INQUIRY,
		// REPORT LUNS): one of the two for each command.
		edtls, cdbs := strings.Split(f[5], ","), strings.Split(f[6], ",")
		if f[6] == "" {
			cdbs = strings.Split(f[7], ",")
		}
		ncmd := 0
		for i, o := range ops {
			op, err := strconv.ParseUint(o, 0, 8)
			if err != nil || i >= len(itts) || i >= len(flags) {
				continue
			}
			fl, _ := strconv.ParseUint(flags[i], 0, 8)
			k := key{f[1], itts[i]}
			switch op & 0x3f {
			case 0x01: // SCSI Command
				c := &scsiCmd{at: at}
				if ncmd < len(edtls) {
					n, _ := strconv.ParseUint(edtls[ncmd], 0, 32)
					c.length = uint32(n)
				}
				if ncmd < len(cdbs) {
					n, _ := strconv.ParseUint(cdbs[ncmd], 0, 8)
					c.op = byte(n)
				}
				ncmd++
				open[k] = c
				cmds = append(cmds, c)
			case 0x25: // SCSI Data-In
				if c := open[k]; c != nil {
					c.dataIn++
					if fl&0x01 != 0 { // S: status in this PDU
						c.done, c.answerd = at, true
						delete(open, k)
					}
				}
			case 0x21: // SCSI Response
				if c := open[k]; c != nil {
					c.done, c.answerd = at, true
					delete(open, k)
				}
			}
		}
	}
	res := make([]scsiCmd, len(cmds))
	for i, c := range cmds {
		res[i] = *c
	}
	return res
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// traceSummary says, for one boot's capture, how many SCSI commands there
// were, how much they read, the target's time per command (command on the
// bridge → its status on the bridge) and the initiator's (status → its next
// command), which at one command at a time add up to the stretch of the
// boot the disk is read in.
func traceSummary(cmds []scsiCmd) string {
	if len(cmds) == 0 {
		return "no SCSI commands captured"
	}
	var target, gaps []time.Duration
	var sumT, sumG, lastDone time.Duration
	var bytesIn uint64
	ops := map[byte]int{}
	for i, c := range cmds {
		ops[c.op]++
		bytesIn += uint64(c.length)
		if c.answerd {
			d := c.done - c.at
			lastDone = max(lastDone, c.done)
			target = append(target, d)
			sumT += d
			if i+1 < len(cmds) && cmds[i+1].at > c.done {
				g := cmds[i+1].at - c.done
				gaps = append(gaps, g)
				sumG += g
			}
		}
	}
	var opList []string
	for op, n := range ops {
		opList = append(opList, fmt.Sprintf("0x%02x×%d", op, n))
	}
	slices.Sort(opList)
	return fmt.Sprintf("%d commands (%s), %.1f MiB; target per command p50 %.2f ms p90 %.2f ms max %.1f ms, sum %.2f s; initiator between commands p50 %.2f ms, sum %.2f s; first command at %.1f s, last status at %.1f s",
		len(cmds), strings.Join(opList, " "), float64(bytesIn)/(1<<20),
		ms(pct(target, 50)), ms(pct(target, 90)), ms(pct(target, 100)), sumT.Seconds(),
		ms(pct(gaps, 50)), sumG.Seconds(), cmds[0].at.Seconds(), lastDone.Seconds())
}

// pct is the p-th percentile of ds (sorted in place).
func pct(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	return ds[min(len(ds)-1, len(ds)*p/100)]
}
