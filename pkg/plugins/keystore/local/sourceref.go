package local

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// SourceRef is the subset of openkcm/common-sdk's commoncfg.SourceRef the
// local keystore reads: a value embedded in the YAML, from an environment
// variable or from a file. CMK injects `supportedregions` in this shape.
type SourceRef struct {
	Source string `json:"source"`
	Value  string `json:"value,omitempty"`
	Env    string `json:"env,omitempty"`
	File   *struct {
		Path   string `json:"path"`
		Format string `json:"format,omitempty"`
	} `json:"file,omitempty"`
}

// Load resolves the reference.
func (r *SourceRef) Load() (string, error) {
	switch strings.ToLower(r.Source) {
	case "embedded":
		return r.Value, nil
	case "env":
		if r.Env == "" {
			return "", fmt.Errorf("source env needs `env`")
		}
		v, ok := os.LookupEnv(r.Env)
		if !ok {
			return "", fmt.Errorf("environment variable %s is not set", r.Env)
		}
		return v, nil
	case "file":
		if r.File == nil || r.File.Path == "" {
			return "", fmt.Errorf("source file needs `file.path`")
		}
		if f := strings.ToLower(r.File.Format); f != "" && f != "binary" {
			return "", fmt.Errorf("file format %q is not supported (binary only)", r.File.Format)
		}
		b, err := os.ReadFile(r.File.Path)
		if err != nil {
			return "", err
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	default:
		return "", fmt.Errorf("unknown source %q (embedded, env, file)", r.Source)
	}
}

// Region is a supported region of a keystore.
type Region struct {
	Name          string `json:"name"`
	TechnicalName string `json:"technicalName"`
}

// parseSupportedRegions reads CMK's `supportedregions` value: {"regions":[...]}.
func parseSupportedRegions(ref *SourceRef) ([]Region, error) {
	raw, err := ref.Load()
	if err != nil {
		return nil, err
	}
	var v struct {
		Regions []Region `json:"regions"`
	}
	dec := json.NewDecoder(strings.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return nil, fmt.Errorf(`want {"regions":[{"name":..,"technicalName":..}]}: %w`, err)
	}
	return v.Regions, nil
}
