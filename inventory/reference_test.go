package inventory

import (
	"encoding"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"testing"
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
