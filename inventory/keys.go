package inventory

import (
	"encoding"
	"reflect"
	"strings"
)

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

// suggestKey is the key valid where unknown (a logical dotted path,
// "dhcp.lease_tme") was written that is nearest to its last part, for
// "did you mean lease_time?"; "" when none is near enough to be a typo.
func suggestKey(unknown string) string {
	keys := map[string]bool{}
	acceptedKeys(reflect.TypeFor[Inventory](), "", keys)
	parent, typed := "", unknown
	if i := strings.LastIndexByte(unknown, '.'); i >= 0 {
		parent, typed = unknown[:i+1], unknown[i+1:]
	}
	best, bestDist := "", max(1, len(typed)/3)+1
	for k := range keys {
		name, ok := strings.CutPrefix(k, parent)
		if !ok || strings.Contains(name, ".") {
			continue
		}
		if d := editDistance(typed, name); d < bestDist || d == bestDist && name < best {
			best, bestDist = name, d
		}
	}
	return best
}

// editDistance counts the insertions, deletions, substitutions and swaps
// of two neighbours that turn a into b (optimal string alignment).
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
