package inventory

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// The edits below change an inventory file the way a person would: one
// [[host]] table goes in or out, and every other byte (comments, order,
// spacing, line ends) stays as it was. A comment block directly above a
// table header, with no blank line between, belongs to that table.

// AddHost returns src with the stanza added after the last [[host]] table,
// or at the end when there is none, set off by a blank line. src must be a
// document that parses.
func AddHost(src []byte, s HostStanza) []byte {
	text := string(src)
	stanza, eol := s.String(), "\n"
	if strings.Contains(text, "\r\n") { // the file's line ends
		stanza, eol = strings.ReplaceAll(stanza, "\n", "\r\n"), "\r\n"
	}
	sc := scan(text)
	at := len(text)
	if last := lastHost(sc); last >= 0 {
		_, end := tableSpan(sc, last)
		// After the last line of the table that is not blank.
		at = end
		for at > 0 {
			ls := lineStart(text, at-1)
			if strings.TrimSpace(text[ls:at]) != "" {
				break
			}
			at = ls
		}
	}
	var b strings.Builder
	b.WriteString(text[:at])
	if at > 0 && text[at-1] != '\n' {
		b.WriteString(eol)
	}
	if at > 0 {
		b.WriteString(eol)
	}
	b.WriteString(stanza)
	b.WriteString(text[at:])
	return []byte(b.String())
}

// RemoveHost returns src without the [[host]] table whose name is name,
// its sub-tables and the comment block directly above it. src must be a
// document that parses.
func RemoveHost(src []byte, name string) ([]byte, error) {
	var doc struct {
		Hosts []struct {
			Name string `toml:"name"`
		} `toml:"host"`
	}
	if _, err := toml.Decode(string(src), &doc); err != nil {
		return nil, err
	}
	idx := -1
	for i, h := range doc.Hosts {
		if h.Name == name {
			idx = i
			break
		}
	}
	if idx < 0 {
		return nil, fmt.Errorf("no host %q", name)
	}
	text := string(src)
	sc := scan(text)
	k := -1
	for i, h := range sc.headers {
		if h.path == "host."+strconv.Itoa(idx) {
			k = i
		}
	}
	if k < 0 {
		return nil, fmt.Errorf("host %q is not written as a [[host]] table; remove it by hand", name)
	}
	start, end := tableSpan(sc, k)
	start = commentsAbove(text, start)
	if end == len(text) {
		// The last table: the blank lines before it go too, so the file
		// does not end in them.
		for start > 0 {
			ls := lineStart(text, start-1)
			if strings.TrimSpace(text[ls:start]) != "" {
				break
			}
			start = ls
		}
	}
	return []byte(text[:start] + text[end:]), nil
}

// lastHost is the index in sc.headers of the last [[host]] header, or -1.
func lastHost(sc *scanner) int {
	last := -1
	for i, h := range sc.headers {
		if rest, ok := strings.CutPrefix(h.path, "host."); ok && !strings.Contains(rest, ".") {
			last = i
		}
	}
	return last
}

// tableSpan is where the table of header k is written: from the start of
// its header's line to the next header that is not one of its sub-tables,
// less the comment block directly above that one (or to the end).
func tableSpan(sc *scanner, k int) (start, end int) {
	text := sc.src
	path := sc.headers[k].path
	start = lineStart(text, sc.headers[k].off)
	for _, h := range sc.headers[k+1:] {
		if !strings.HasPrefix(h.path, path+".") {
			return start, commentsAbove(text, lineStart(text, h.off))
		}
	}
	return start, len(text)
}

// commentsAbove moves off, the start of a line, up over the comment lines
// directly above it.
func commentsAbove(text string, off int) int {
	for off > 0 {
		ls := lineStart(text, off-1)
		if !strings.HasPrefix(strings.TrimLeft(text[ls:off], " \t"), "#") {
			break
		}
		off = ls
	}
	return off
}

// lineStart is the offset of the start of the line that holds offset i.
func lineStart(text string, i int) int {
	return strings.LastIndexByte(text[:i], '\n') + 1
}
