package faults

import (
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/netsan/netsan/inventory/inventorytest"
	"github.com/netsan/netsan/netsantest"
)

// TestCHAPSecretsNeverLogged runs serve at debug level through iSCSI
// logins with right and wrong CHAP secrets (one-way, mutual, discovery) and
// a reload that changes a secret, then searches the whole log for every
// secret — including the wrong guesses, which are often typos of the right
// one — as text, hex and base64.
func TestCHAPSecretsNeverLogged(t *testing.T) {
	netsantest.NeedTools(t, "iscsi-inq", "iscsi-ls")
	const (
		hostSecret    = "host-secret-5d1e8a0c"
		newSecret     = "host-secret-rotated-77b2"
		dataSecret    = "data-secret-0a9f3b6e"
		mutualSecret  = "mutual-secret-c4e1d2aa"
		discSecret    = "discovery-secret-19ab"
		wrongGuess    = "host-secret-5d1e8a0d"
		wrongMutual   = "mutual-secret-c4e1d2ab"
		dataInitiator = testBase + ":db1"
	)
	dir := t.TempDir()
	httpPort, iscsiPort := netsantest.FreePort(t, "tcp"), netsantest.FreePort(t, "tcp")
	inv := func(secret string) string {
		return inventorytest.Loopback("data", httpPort, iscsiPort, testBase) + fmt.Sprintf(`discovery_chap = { user = "disc", secret = %q }
[[host]]
name = "node1"
mac = "52:54:00:00:00:01"
root = { image = "roots/node1.img", size = "16MiB" }
chap = { user = "node1", secret = %q }
[[target]]
name = "data"
luns = [ { lun = 0, image = "data/db.img", size = "16MiB" } ]
[[target.acl]]
initiator = %q
chap = { user = "db1", secret = %q, mutual_user = "tgt", mutual_secret = %q }
`, discSecret, secret, dataInitiator, dataSecret, mutualSecret)
	}
	path := writeInventory(t, dir, inv(hostSecret))
	n := startNetsan(t, path, "", fmt.Sprintf("http://127.0.0.1:%d", httpPort), "--log-level", "debug")
	portal := fmt.Sprintf("127.0.0.1:%d", iscsiPort)
	node1 := testBase + ":node1"
	url := func(cred, target string) string {
		return fmt.Sprintf("iscsi://%s@%s/%s/0", cred, portal, target)
	}
	mutual := func(secret string) []string {
		return []string{"LIBISCSI_CHAP_TARGET_USERNAME=tgt", "LIBISCSI_CHAP_TARGET_PASSWORD=" + secret}
	}
	type attempt struct {
		name string
		env  []string
		args []string
		ok   bool
	}
	attempts := []attempt{
		{"one-way, right", nil, []string{"iscsi-inq", "-i", node1, url("node1%"+hostSecret, node1)}, true},
		{"one-way, wrong", nil, []string{"iscsi-inq", "-i", node1, url("node1%"+wrongGuess, node1)}, false},
		{"mutual, right", mutual(mutualSecret), []string{"iscsi-inq", "-i", dataInitiator, url("db1%"+dataSecret, testBase+":data")}, true},
		{"mutual, target's secret wrong", mutual(wrongMutual), []string{"iscsi-inq", "-i", dataInitiator, url("db1%"+dataSecret, testBase+":data")}, false},
		{"discovery, right", nil, []string{"iscsi-ls", "-i", node1, fmt.Sprintf("iscsi://disc%%%s@%s", discSecret, portal)}, true},
		{"discovery, wrong", nil, []string{"iscsi-ls", "-i", node1, fmt.Sprintf("iscsi://disc%%%s@%s", wrongGuess, portal)}, false},
	}
	for _, a := range attempts {
		out, err := run(30*time.Second, a.env, a.args[0], a.args[1:]...)
		if (err == nil) != a.ok {
			t.Errorf("%s: %v\n%s", a.name, err, out)
		}
	}
	// A reload that rotates node1's secret: the diff must not print it.
	if err := os.WriteFile(path, []byte(inv(newSecret)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := n.proc.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	netsantest.WaitFor(t, "the reload", 20*time.Second, func() bool { return strings.Contains(n.log.String(), `"msg":"reloaded"`) })
	if out, err := run(30*time.Second, nil, "iscsi-inq", "-i", node1, url("node1%"+newSecret, node1)); err != nil {
		t.Errorf("login with the rotated secret: %v\n%s", err, out)
	}
	if out, err := run(30*time.Second, nil, "iscsi-inq", "-i", node1, url("node1%"+hostSecret, node1)); err == nil {
		t.Errorf("login with the old secret after rotation succeeded:\n%s", out)
	}
	n.kill()
	log := n.log.String()
	if !strings.Contains(log, `"level":"debug"`) {
		t.Fatal("no debug line in the log: the test did not run at debug level")
	}
	for _, s := range []string{hostSecret, newSecret, dataSecret, mutualSecret, discSecret, wrongGuess, wrongMutual} {
		assertNoSecret(t, log, s)
	}
	t.Logf("%d logins (right and wrong CHAP) + a secret rotation; %d log lines, %d bytes: no secret in them",
		len(attempts)+2, strings.Count(log, "\n"), len(log))
}
