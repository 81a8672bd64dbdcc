package keystoreconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"strings"

	"sigs.k8s.io/yaml"
)

// MaxConfigBytes bounds a yamlConfiguration. Profiles are a few hundred
// bytes; the bound keeps a hostile profile from costing memory in the
// parser.
const MaxConfigBytes = 1 << 20

// Warnings are keys Decode ignored (unknown top-level keys, and unknown keys
// inside SourceRefs), as dotted paths. They contain names only, never values,
// so they are safe to log.
type Warnings []string

// String joins the warnings for one log line.
func (w Warnings) String() string { return strings.Join(w, ", ") }

// Decode parses a plugin's yamlConfiguration into cfg, a pointer to a struct
// with json tags (sigs.k8s.io/yaml conventions). An empty or blank
// configuration leaves cfg unchanged. The strictness rule is the package's
// (see the package comment): declared keys strictly, unknown top-level keys
// ignored with a warning unless they look like a typo of a declared key,
// unknown keys inside SourceRefs ignored with a warning.
func Decode(yamlConfiguration string, cfg any) (Warnings, error) {
	rv := reflect.ValueOf(cfg)
	if rv.Kind() != reflect.Pointer || rv.IsNil() || rv.Elem().Kind() != reflect.Struct {
		return nil, errors.New("keystoreconfig.Decode needs a pointer to a struct")
	}
	if len(yamlConfiguration) > MaxConfigBytes {
		return nil, fmt.Errorf("configuration is %d bytes, more than the limit of %d", len(yamlConfiguration), MaxConfigBytes)
	}
	if strings.TrimSpace(yamlConfiguration) == "" {
		return nil, nil
	}
	js, err := yaml.YAMLToJSONStrict([]byte(yamlConfiguration))
	if err != nil {
		return nil, fmt.Errorf("invalid YAML: %w", err)
	}
	if bytes.Equal(bytes.TrimSpace(js), []byte("null")) {
		return nil, nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(js, &top); err != nil {
		return nil, errors.New("configuration must be a YAML mapping of keys")
	}

	known := jsonFieldNames(rv.Elem().Type())
	var warnings Warnings
	for _, k := range sortedKeys(top) {
		if isKnown(k, known) {
			continue
		}
		if near := typoOf(k, known); near != "" {
			return nil, fmt.Errorf("unknown key %q (did you mean %q?)", k, near)
		}
		warnings = append(warnings, k)
		delete(top, k)
	}

	rest, err := json.Marshal(top)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(rest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(cfg); err != nil {
		return nil, fmt.Errorf("invalid configuration: %w", err)
	}
	warnings = append(warnings, sourceRefUnknowns(rv.Elem(), "")...)
	return warnings, nil
}

// jsonFieldNames lists the keys encoding/json decodes into t, following
// embedded structs the way encoding/json does.
func jsonFieldNames(t reflect.Type) []string {
	var names []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("json")
		name, _, _ := strings.Cut(tag, ",")
		if name == "-" && tag == "-" {
			continue
		}
		if f.Anonymous && name == "" {
			ft := f.Type
			if ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				names = append(names, jsonFieldNames(ft)...)
				continue
			}
		}
		if !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// isKnown matches like encoding/json: exactly or case-insensitively.
func isKnown(k string, known []string) bool {
	for _, n := range known {
		if strings.EqualFold(k, n) {
			return true
		}
	}
	return false
}

// typoOf returns the declared key k most likely meant, or "": the same
// letters ignoring case, `-` and `_`, or a small edit distance (one edit for
// keys of up to four letters, two otherwise).
func typoOf(k string, known []string) string {
	nk := normaliseKey(k)
	for _, n := range known {
		nn := normaliseKey(n)
		if nk == nn {
			return n
		}
		limit := 2
		if len(nn) <= 4 || len(nk) <= 4 {
			limit = 1
		}
		if editDistance(nk, nn, limit) <= limit {
			return n
		}
	}
	return ""
}

func normaliseKey(s string) string {
	return strings.ToLower(strings.NewReplacer("-", "", "_", "", " ", "").Replace(s))
}

// editDistance is the optimal-string-alignment distance of a and b (edits
// and adjacent transpositions, so `dri` is one step from `dir`), giving up
// (returning limit+1) once every alignment exceeds limit, so a long hostile
// key costs little.
func editDistance(a, b string, limit int) int {
	if d := len(a) - len(b); d > limit || -d > limit {
		return limit + 1
	}
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		rowMin := cur[0]
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
			rowMin = min(rowMin, cur[j])
		}
		if rowMin > limit {
			return limit + 1
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

var sourceRefType = reflect.TypeOf(SourceRef{})

// sourceRefUnknowns collects SourceRef.Unknown from every SourceRef reachable
// through struct fields, pointers and slices of cfg.
func sourceRefUnknowns(v reflect.Value, path string) Warnings {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return sourceRefUnknowns(v.Elem(), path)
	case reflect.Struct:
		if v.Type() == sourceRefType {
			ref := v.Interface().(SourceRef)
			out := make(Warnings, 0, len(ref.Unknown))
			for _, u := range ref.Unknown {
				out = append(out, path+"."+u)
			}
			return out
		}
		var out Warnings
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			if !f.IsExported() {
				continue
			}
			name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			if name == "" {
				name = f.Name
			}
			p := name
			if path != "" {
				p = path + "." + name
			}
			out = append(out, sourceRefUnknowns(v.Field(i), p)...)
		}
		return out
	case reflect.Slice, reflect.Array:
		var out Warnings
		for i := 0; i < v.Len(); i++ {
			out = append(out, sourceRefUnknowns(v.Index(i), fmt.Sprintf("%s[%d]", path, i))...)
		}
		return out
	case reflect.Map:
		var out Warnings
		iter := v.MapRange()
		for iter.Next() {
			out = append(out, sourceRefUnknowns(iter.Value(), fmt.Sprintf("%s.%v", path, iter.Key()))...)
		}
		return out
	}
	return nil
}
