package keystoreconfig

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"
	"strconv"
	"strings"
)

// Source values of a SourceRef (common-sdk's SourceValueType constants).
const (
	SourceEmbedded = "embedded"
	SourceEnv      = "env"
	SourceFile     = "file"
)

// File formats of a file SourceRef (common-sdk's FileFormat constants).
const (
	FormatJSON   = "json"
	FormatYAML   = "yaml"
	FormatBinary = "binary"
)

// MaxFileBytes bounds what a file SourceRef may read: secrets and region
// lists are small, and a reference to /dev/zero must not exhaust memory.
const MaxFileBytes = 1 << 20

// SourceRef is common-sdk's commoncfg.SourceRef: a value embedded in the
// YAML, read from an environment variable or from a file. Field names and
// order are CMK's (its YAML marshalling writes source, env, file, value).
type SourceRef struct {
	Source string  `json:"source" yaml:"source"`
	Env    string  `json:"env" yaml:"env"`
	File   FileRef `json:"file" yaml:"file"`
	Value  string  `json:"value" yaml:"value"`

	// Unknown lists keys of the mapping (and of `file`, as file.<key>) that
	// this version does not know; they were ignored. Not serialised.
	Unknown []string `json:"-" yaml:"-"`
}

// FileRef is common-sdk's commoncfg.CredentialFile.
type FileRef struct {
	Path     string `json:"path" yaml:"path"`
	Format   string `json:"format" yaml:"format"`
	JSONPath string `json:"jsonPath" yaml:"jsonPath"`
}

// UnmarshalJSON decodes the known keys (matched case-insensitively, like
// encoding/json) and ignores any other key, recording it in Unknown. A
// SourceRef belongs to CMK and common-sdk, which add fields over time; a
// new one must not fail a plugin's Configure. Known keys with the wrong type
// are still errors.
func (r *SourceRef) UnmarshalJSON(b []byte) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("a source reference must be a mapping {source, env, file, value}: %w", err)
	}
	var out SourceRef
	for _, k := range sortedKeys(raw) {
		v := raw[k]
		var err error
		switch strings.ToLower(k) {
		case "source":
			err = decodeString(v, &out.Source)
		case "env":
			err = decodeString(v, &out.Env)
		case "value":
			err = decodeString(v, &out.Value)
		case "file":
			err = out.File.decode(v, &out.Unknown)
		default:
			out.Unknown = append(out.Unknown, k)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	*r = out
	return nil
}

func (f *FileRef) decode(b []byte, unknown *[]string) error {
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return fmt.Errorf("must be a mapping {path, format, jsonPath}: %w", err)
	}
	for _, k := range sortedKeys(raw) {
		v := raw[k]
		var err error
		switch strings.ToLower(k) {
		case "path":
			err = decodeString(v, &f.Path)
		case "format":
			err = decodeString(v, &f.Format)
		case "jsonpath":
			err = decodeString(v, &f.JSONPath)
		default:
			*unknown = append(*unknown, "file."+k)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}

// decodeString accepts a string or null (YAML `key:` with no value).
func decodeString(b json.RawMessage, dst *string) error {
	if bytes.Equal(bytes.TrimSpace(b), []byte("null")) {
		*dst = ""
		return nil
	}
	if err := json.Unmarshal(b, dst); err != nil {
		return errors.New("must be a string")
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Load resolves the reference the way common-sdk's ExtractValueFromSourceRef
// does, so a reference means the same to CMK and to our plugins:
//
//   - embedded (also an empty source, common-sdk's default): Value.
//   - env: the variable named by Value, else by Env (common-sdk's order); an
//     unset or empty variable is an error.
//   - file: the file at File.Path (at most MaxFileBytes); with format json
//     and a jsonPath, the string at that path.
//
// The source name is matched case-insensitively. Errors name the variable or
// file, never the value.
func (r *SourceRef) Load() ([]byte, error) {
	if r == nil {
		return nil, errors.New("source reference is missing")
	}
	switch strings.ToLower(strings.TrimSpace(r.Source)) {
	case "", SourceEmbedded:
		return []byte(r.Value), nil
	case SourceEnv:
		names := []string{r.Value, r.Env}
		for _, n := range names {
			if n = strings.TrimSpace(n); n == "" {
				continue
			}
			if v := os.Getenv(n); v != "" {
				return []byte(v), nil
			}
		}
		if strings.TrimSpace(r.Value) == "" && strings.TrimSpace(r.Env) == "" {
			return nil, errors.New("source env needs `env` (the variable name)")
		}
		return nil, fmt.Errorf("environment variable %s is not set or empty", firstNonEmpty(r.Value, r.Env))
	case SourceFile:
		if strings.TrimSpace(r.File.Path) == "" {
			return nil, errors.New("source file needs `file.path`")
		}
		data, err := readBounded(r.File.Path)
		if err != nil {
			return nil, err
		}
		switch strings.ToLower(strings.TrimSpace(r.File.Format)) {
		case FormatJSON:
			if strings.TrimSpace(r.File.JSONPath) == "" {
				return data, nil
			}
			return jsonQuery(data, r.File.JSONPath)
		case "", FormatYAML, FormatBinary:
			return data, nil
		default:
			return nil, fmt.Errorf("file format %q is not supported (json, yaml, binary)", r.File.Format)
		}
	default:
		return nil, fmt.Errorf("unknown source %q (embedded, env, file)", r.Source)
	}
}

// LoadString is Load with trailing line breaks removed, the usual shape of a
// secret file or a mounted Kubernetes Secret written with a newline.
func (r *SourceRef) LoadString() (string, error) {
	b, err := r.Load()
	if err != nil {
		return "", err
	}
	return strings.TrimRight(string(b), "\r\n"), nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if strings.TrimSpace(v) != "" {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

func readBounded(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading source file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading source file %s: %w", path, err)
	}
	if len(data) > MaxFileBytes {
		return nil, fmt.Errorf("source file %s is larger than %d bytes", path, MaxFileBytes)
	}
	return data, nil
}

// jsonQuery supports the JSONPath subset configuration files use: `$`
// followed by `.name`, `['name']`, `["name"]` and `[index]` steps. The
// result must be a string, as in common-sdk.
func jsonQuery(data []byte, path string) ([]byte, error) {
	var doc any
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("source file is not JSON: %w", err)
	}
	steps, err := parseJSONPath(path)
	if err != nil {
		return nil, err
	}
	cur := doc
	for _, s := range steps {
		switch v := cur.(type) {
		case map[string]any:
			if s.isIndex {
				return nil, fmt.Errorf("jsonPath %q: [%d] applied to an object", path, s.index)
			}
			next, ok := v[s.key]
			if !ok {
				return nil, fmt.Errorf("jsonPath %q: key %q not found", path, s.key)
			}
			cur = next
		case []any:
			if !s.isIndex {
				return nil, fmt.Errorf("jsonPath %q: key %q applied to an array", path, s.key)
			}
			if s.index < 0 || s.index >= len(v) {
				return nil, fmt.Errorf("jsonPath %q: index %d out of range", path, s.index)
			}
			cur = v[s.index]
		default:
			return nil, fmt.Errorf("jsonPath %q: cannot descend into a scalar", path)
		}
	}
	str, ok := cur.(string)
	if !ok {
		return nil, fmt.Errorf("jsonPath %q: value is not a string", path)
	}
	return []byte(str), nil
}

type pathStep struct {
	key     string
	index   int
	isIndex bool
}

func parseJSONPath(p string) ([]pathStep, error) {
	orig := p
	p = strings.TrimSpace(p)
	if !strings.HasPrefix(p, "$") {
		return nil, fmt.Errorf("jsonPath %q must start with $", orig)
	}
	p = p[1:]
	var steps []pathStep
	for p != "" {
		switch p[0] {
		case '.':
			p = p[1:]
			end := strings.IndexAny(p, ".[")
			if end < 0 {
				end = len(p)
			}
			if end == 0 {
				return nil, fmt.Errorf("jsonPath %q: empty key", orig)
			}
			steps = append(steps, pathStep{key: p[:end]})
			p = p[end:]
		case '[':
			end := strings.IndexByte(p, ']')
			if end < 0 {
				return nil, fmt.Errorf("jsonPath %q: unclosed [", orig)
			}
			inner := p[1:end]
			p = p[end+1:]
			if len(inner) >= 2 && (inner[0] == '\'' || inner[0] == '"') && inner[len(inner)-1] == inner[0] {
				steps = append(steps, pathStep{key: inner[1 : len(inner)-1]})
				continue
			}
			n, err := strconv.Atoi(inner)
			if err != nil || n < 0 {
				return nil, fmt.Errorf("jsonPath %q: [%s] is neither an index nor a quoted key (filters and wildcards are not supported)", orig, inner)
			}
			steps = append(steps, pathStep{index: n, isIndex: true})
		default:
			return nil, fmt.Errorf("jsonPath %q: unexpected %q", orig, p[0])
		}
	}
	return steps, nil
}
