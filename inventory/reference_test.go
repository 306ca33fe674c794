package inventory

import (
	"encoding"
	"maps"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// reference is the inventory reference; it documents a key in a table row
// whose first cell is the dotted key in backquotes: | `dhcp.lease_time` | …
const reference = "../docs/inventory.md"

var referenceRow = regexp.MustCompile("(?m)^\\| `([a-z0-9_.]+)` \\|")

var textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()

// acceptedKeys is every key the decoder fills in a value of type t, as the
// dotted path a person reads ("host.root.size"), from the toml tags. Each
// is true for a key that holds a value, false for a table (a section, an
// inline table, an array of tables) whose keys are listed too.
func acceptedKeys(t reflect.Type, prefix string, keys map[string]bool) {
	for f := range t.Fields() {
		name := f.Tag.Get("toml")
		if !f.IsExported() || name == "" || name == "-" {
			continue
		}
		key := prefix + name
		ft := f.Type
		if ft.Kind() == reflect.Pointer { // an optional table or value
			ft = ft.Elem()
		}
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct && !isText(ft.Elem()) {
			ft = ft.Elem() // [[x]]: each element a table of the same keys
		}
		if ft.Kind() == reflect.Struct && !isText(ft) {
			keys[key] = false
			acceptedKeys(ft, key+".", keys)
			continue
		}
		keys[key] = true
	}
}

// isText: the decoder gives a TOML string to the type's UnmarshalText.
func isText(t reflect.Type) bool { return reflect.PointerTo(t).Implements(textUnmarshaler) }

// The reference documents every key the parser accepts, and no key it
// refuses: a new field without a row here fails, as does a row for a key
// that was renamed or never existed.
func TestReferenceDocumentsEveryKey(t *testing.T) {
	keys := map[string]bool{}
	acceptedKeys(reflect.TypeFor[Inventory](), "", keys)
	if len(keys) < 50 {
		t.Fatalf("found %d keys in Inventory's toml tags; the walk is broken", len(keys))
	}
	b, err := os.ReadFile(reference)
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, m := range referenceRow.FindAllStringSubmatch(string(b), -1) {
		documented[m[1]] = true
	}
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		if keys[k] && !documented[k] {
			t.Errorf("the parser accepts %s, but %s has no row | `%s` | for it", k, reference, k)
		}
	}
	for _, k := range slices.Sorted(maps.Keys(documented)) {
		if _, ok := keys[k]; !ok {
			t.Errorf("%s documents %s, which the parser does not accept", reference, k)
		}
	}
}

var tomlBlock = regexp.MustCompile("(?ms)^ *```toml\n(.*?)^ *```")

// Every TOML snippet in the README and the guides is TOML, and uses only
// keys the parser accepts: a guide cannot teach a key that check refuses.
func TestDocsTOMLUsesKnownKeys(t *testing.T) {
	files, err := filepath.Glob("../docs/*.md")
	if err != nil || len(files) < 4 {
		t.Fatalf("docs: %v (%d files)", err, len(files))
	}
	files = append(files, "../README.md")
	n := 0
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range tomlBlock.FindAllStringSubmatch(string(b), -1) {
			n++
			var inv Inventory
			md, err := toml.Decode(m[1], &inv)
			if err != nil {
				t.Errorf("%s: a toml block does not parse: %v\n%s", f, err, m[1])
				continue
			}
			for _, k := range md.Undecoded() {
				t.Errorf("%s: a toml block uses %s, which the parser does not accept", f, stripIndices(k.String()))
			}
		}
	}
	if n < 4 {
		t.Errorf("found %d toml blocks in the docs; the pattern is broken", n)
	}
	t.Logf("%d toml blocks", n)
}

// The reference links every guide, and the README links the reference and
// every guide.
func TestDocsAreLinked(t *testing.T) {
	guides, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	ref, err := os.ReadFile(reference)
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range guides {
		base := filepath.Base(g)
		if !strings.Contains(string(readme), "](docs/"+base+")") {
			t.Errorf("README.md does not link docs/%s", base)
		}
		if base != filepath.Base(reference) && !strings.Contains(string(ref), "]("+base+")") {
			t.Errorf("%s does not link %s", reference, base)
		}
	}
}
