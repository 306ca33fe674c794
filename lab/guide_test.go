package lab

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The data LUN guide tells a person what to type on an installed host; the
// data mode of the guest's /init does it for e2e.TestDataLUN. Every
// iscsiadm, mount and blkid command of the guide's code blocks, each
// iscsid.conf setting and the fstab line's type and options must be one
// the data mode runs, or the guide teaches something no test has seen work.
func TestDataModeFollowsTheGuide(t *testing.T) {
	guide := read(t, "../docs/data-luns.md")
	init := read(t, "guest/init")
	funcs := shellFuncs(init)
	var data strings.Builder // the data mode: data() and the data_* it calls
	for name, body := range funcs {
		if name == "data" || strings.HasPrefix(name, "data_") {
			data.WriteString(body)
		}
	}
	if data.Len() == 0 || funcs["iscsi_conf"] == "" {
		t.Fatalf("guest/init: no data() or iscsi_conf()")
	}
	code := strings.Join(codeBlocks(guide), "\n")

	ran := commands(data.String())
	want := slices.Compact(slices.Sorted(slices.Values(commands(code))))
	if len(want) < 6 {
		t.Fatalf("found %d commands in the guide's code blocks; the pattern is broken: %q", len(want), want)
	}
	for _, c := range want {
		if !slices.Contains(ran, c) {
			t.Errorf("the guide runs %q; the data mode does not", c)
		}
	}
	if t.Failed() {
		t.Logf("the data mode runs %q", ran)
	}

	conf := settings(funcs["iscsi_conf"])
	guideConf := settings(code)
	if len(guideConf) < 5 {
		t.Fatalf("found %d iscsid.conf settings in the guide: %q", len(guideConf), guideConf)
	}
	for k, v := range guideConf {
		got, ok := conf[k]
		switch {
		case !ok:
			t.Errorf("the guide sets %s in iscsid.conf; the data mode does not", k)
		case !strings.Contains(got, "$") && got != v:
			t.Errorf("the guide sets %s = %s; the data mode %s = %s", k, v, k, got)
		}
	}
	if strings.Contains(code, "InitiatorName=") && !strings.Contains(funcs["iscsi_conf"], "InitiatorName=") {
		t.Errorf("the guide writes InitiatorName= in initiatorname.iscsi; the data mode does not")
	}

	gt, gopts := fstab(code)
	it, iopts := fstab(data.String())
	if gopts == "" || iopts == "" {
		t.Fatalf("fstab line: guide %q, data mode %q", gopts, iopts)
	}
	if gt != it || gopts != iopts {
		t.Errorf("the guide's fstab line mounts %s with %s; the data mode's %s with %s", gt, gopts, it, iopts)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

var shellFunc = regexp.MustCompile(`(?ms)^([a-z_]+)\(\) \{\n(.*?)^\}`)

// shellFuncs maps each top-level function of a shell script to its body.
func shellFuncs(script string) map[string]string {
	out := map[string]string{}
	for _, m := range shellFunc.FindAllStringSubmatch(script, -1) {
		out[m[1]] = m[2]
	}
	return out
}

var fence = regexp.MustCompile("(?ms)^```[a-z]*\n(.*?)^```")

func codeBlocks(md string) []string {
	var out []string
	for _, m := range fence.FindAllStringSubmatch(md, -1) {
		out = append(out, m[1])
	}
	return out
}

// command finds iscsiadm, mount and blkid where a command starts: at the
// beginning of a line, after ; | & or ( , or inside $( ).
var command = regexp.MustCompile(`(?m)(?:^|[;|&(]|\$\()\s*(iscsiadm|mount|blkid)\s+([^|;&)>#\n]*)`)

// commands lists the operations in text, each as its program and its
// words sorted, without those that name this host, target or disk (an IQN,
// a portal, a path, a shell variable, a redirection's fd): "iscsiadm -T -m
// -n -o -p -v automatic node node.startup update" says what is done, not
// to whom.
func commands(text string) []string {
	var out []string
	for _, m := range command.FindAllStringSubmatch(text, -1) {
		var ops []string
		for _, tok := range strings.Fields(m[2]) {
			tok = strings.Trim(tok, `"'`)
			if tok == "" || strings.ContainsAny(tok[:1], "$/0123456789") || strings.Contains(tok, ":") {
				continue
			}
			ops = append(ops, tok)
		}
		slices.Sort(ops)
		out = append(out, m[1]+" "+strings.Join(ops, " "))
	}
	return out
}

var setting = regexp.MustCompile(`(?m)^\s*(?:echo ")?((?:node|discovery)\.[a-z_.\[\]0-9]+) = ([^"\n]*)`)

// settings are the iscsid.conf lines of text, key to value.
func settings(text string) map[string]string {
	out := map[string]string{}
	for _, m := range setting.FindAllStringSubmatch(text, -1) {
		out[m[1]] = strings.TrimSpace(m[2])
	}
	return out
}

var fstabLine = regexp.MustCompile(`(?m)^\s*(?:echo ")?UUID=(\S+)\s+(\S+)\s+(\S+)\s+(\S+)\s+\d\s+\d`)

// fstab is the file system type and options of the first fstab line in text.
func fstab(text string) (fstype, options string) {
	m := fstabLine.FindStringSubmatch(text)
	if m == nil {
		return "", ""
	}
	return m[3], m[4]
}
