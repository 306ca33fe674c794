package inventory

import (
	"strconv"
	"strings"
)

// Pos is a 1-based line and column in the inventory file.
type Pos struct{ Line, Col int }

// positions maps every key of a TOML document to where it was written, with
// array elements numbered: "host.2.root.image", "target.0.acl.1.initiator",
// "target.0.luns.1.lun". BurntSushi/toml keeps key positions private and keyed
// without array indices, so a small scanner walks the same grammar to let every
// problem in a [[host]] point at its own line. It assumes the document already
// parsed; it never reports syntax errors itself.
type positions map[string]Pos

func locate(src string) positions { return scan(src).pos }

// scan walks a document that parsed, for locate and for the edits of
// edit.go.
func scan(src string) *scanner {
	s := &scanner{src: src, line: 1, col: 1, pos: positions{}, arrays: map[string]int{}}
	s.document()
	return s
}

// header is a table header as written: [x] or [[x]].
type header struct {
	path string // indexed, as in positions: "host.2", "host.2.chap"
	off  int    // byte offset of its first '['
}

type scanner struct {
	src       string
	i         int
	line, col int
	pos       positions
	// arrays counts [[tables]] by their indexed path, e.g. "target.0.acl" → 2.
	arrays map[string]int
	// headers are the table headers in file order.
	headers []header
}

func (s *scanner) eof() bool { return s.i >= len(s.src) }
func (s *scanner) peek() byte {
	if s.eof() {
		return 0
	}
	return s.src[s.i]
}

func (s *scanner) next() byte {
	if s.eof() {
		return 0
	}
	c := s.src[s.i]
	s.i++
	if c == '\n' {
		s.line, s.col = s.line+1, 1
	} else {
		s.col++
	}
	return c
}

// space skips blanks, and newlines and comments too when nl is set.
func (s *scanner) space(nl bool) {
	for !s.eof() {
		switch c := s.peek(); {
		case c == ' ' || c == '\t' || c == '\r':
			s.next()
		case c == '\n' && nl:
			s.next()
		case c == '#':
			for !s.eof() && s.peek() != '\n' {
				s.next()
			}
		default:
			return
		}
	}
}

func (s *scanner) document() {
	var table string // indexed path of the current table
	for guard := 0; !s.eof() && guard < len(s.src)+1; guard++ {
		s.space(true)
		if s.eof() {
			return
		}
		at := Pos{s.line, s.col}
		if s.peek() == '[' {
			off := s.i
			s.next()
			array := s.peek() == '['
			if array {
				s.next()
			}
			s.space(false)
			table = s.resolve(s.key())
			if array {
				n := s.arrays[table]
				s.arrays[table] = n + 1
				s.mark(table, at)
				table += "." + strconv.Itoa(n)
			}
			s.mark(table, at)
			s.headers = append(s.headers, header{table, off})
			s.skipLine()
			continue
		}
		start := s.i
		s.keyval(table)
		if s.i == start { // not a key: give up on this line rather than loop
			s.skipLine()
		}
	}
}

// resolve turns a header's logical path ("target.acl") into its indexed
// path ("target.0.acl") by following the latest element of each array table.
func (s *scanner) resolve(parts []string) string {
	var b strings.Builder
	for i, p := range parts {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(p)
		if i < len(parts)-1 {
			if n, ok := s.arrays[b.String()]; ok && n > 0 {
				b.WriteString("." + strconv.Itoa(n-1))
			}
		}
	}
	return b.String()
}

func (s *scanner) mark(path string, p Pos) {
	if _, ok := s.pos[path]; !ok {
		s.pos[path] = p
	}
}

func (s *scanner) skipLine() {
	for !s.eof() && s.peek() != '\n' {
		if q := s.peek(); q == '"' || q == '\'' {
			s.str()
			continue
		}
		s.next()
	}
}

// key reads a dotted key: bare, "basic" or 'literal' parts.
func (s *scanner) key() []string {
	var parts []string
	for !s.eof() {
		s.space(false)
		var part string
		switch s.peek() {
		case '"', '\'':
			part = s.str()
		default:
			start := s.i
			for !s.eof() && isBare(s.peek()) {
				s.next()
			}
			part = s.src[start:s.i]
		}
		if part == "" && len(parts) == 0 && !(s.i > 0 && (s.src[s.i-1] == '"' || s.src[s.i-1] == '\'')) {
			return nil
		}
		parts = append(parts, part)
		s.space(false)
		if s.peek() != '.' {
			return parts
		}
		s.next()
	}
	return parts
}

func isBare(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

func (s *scanner) keyval(table string) {
	at := Pos{s.line, s.col}
	parts := s.key()
	if len(parts) == 0 {
		return
	}
	path := strings.Join(parts, ".")
	if table != "" {
		path = table + "." + path
	}
	s.mark(path, at)
	s.space(false)
	if s.peek() != '=' {
		return
	}
	s.next()
	s.space(false)
	s.value(path)
}

func (s *scanner) value(path string) {
	switch s.peek() {
	case '{':
		s.items('}', false, func(int) { s.keyval(path) })
	case '[':
		s.items(']', true, func(n int) {
			elem := path + "." + strconv.Itoa(n)
			s.mark(elem, Pos{s.line, s.col})
			s.value(elem)
		})
	case '"', '\'':
		s.str()
	default:
		for !s.eof() {
			c := s.peek()
			if c == ',' || c == ']' || c == '}' || c == '\n' || c == '#' {
				return
			}
			s.next()
		}
	}
}

// items consumes an inline table or an array from its opening bracket to
// end: each item, read by item with its index, the commas between them,
// and the space around them (newlines too where lines: in an array).
func (s *scanner) items(end byte, lines bool, item func(n int)) {
	s.next()
	for n := 0; !s.eof(); n++ {
		s.space(lines)
		if s.peek() == end {
			s.next()
			return
		}
		start := s.i
		item(n)
		s.space(lines)
		if s.peek() == ',' {
			s.next()
		} else if s.i == start {
			s.next() // malformed; never loop in place
		}
	}
}

// str consumes a basic, literal or multi-line string and returns its raw text
// (escapes are left as written: keys with escapes are rare enough).
func (s *scanner) str() string {
	q := s.next()
	if strings.HasPrefix(s.src[s.i:], string([]byte{q, q})) { // multi-line
		s.next()
		s.next()
		start := s.i
		end := strings.Repeat(string(q), 3)
		for !s.eof() && !strings.HasPrefix(s.src[s.i:], end) {
			if q == '"' && s.peek() == '\\' {
				s.next()
			}
			if !s.eof() {
				s.next()
			}
		}
		text := s.src[start:s.i]
		for k := 0; k < 3 && !s.eof(); k++ {
			s.next()
		}
		return text
	}
	start := s.i
	for !s.eof() && s.peek() != q && s.peek() != '\n' {
		if q == '"' && s.peek() == '\\' {
			s.next()
			if s.eof() {
				break
			}
		}
		s.next()
	}
	text := s.src[start:s.i]
	if !s.eof() && s.peek() == q {
		s.next()
	}
	return text
}
