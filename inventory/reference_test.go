package inventory

import (
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
