// Package faults holds netsan's black-box fault tests, and nothing else.
//
// Each test builds nothing of its own: TestMain builds ./cmd/netsan once, and
// the tests run `netsan serve -c <generated inventory>` as a child process —
// on 127.0.0.1 high ports, or inside network namespaces on 198.18.0.0/15 for
// DHCP broadcasts — and attack it from outside as a hostile network would:
// malformed and flooding DHCP clients, TFTP request storms, iSCSI peers that
// connect and vanish, never finish a login, send a header a byte at a time or
// open more sessions than allowed, kill -9 in the middle of persistent
// reservation changes, CHAP logins whose secrets must never reach the log,
// and another machine on the LAN asking for a Pi's cmdline.txt, which
// carries the Pi's CHAP secret.
// After each attack the server's own gauges (/metrics: go_goroutines,
// process_open_fds, and go_memstats_heap_inuse_bytes read after a GC forced
// through /debug/pprof/heap?gc=1) must come back to their baseline and a
// well-behaved real client (iscsi-inq, curl, udhcpc) must still be served.
//
// RELIABILITY.md at the top of the repository tabulates what these tests and
// the per-package fault tests tried, and what was lost.
package faults
