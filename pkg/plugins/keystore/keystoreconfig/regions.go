package keystoreconfig

import (
	"encoding/json"
	"fmt"
	"strings"

	yamlv3 "go.yaml.in/yaml/v3"
)

// SupportedRegionsKey is the top-level key CMK merges into the YAML of every
// KeystoreProvider plugin.
const SupportedRegionsKey = "supportedregions"

// MaxRegions bounds the injected list; CMK landscapes have a handful.
const MaxRegions = 1000

// Region is one entry of CMK's keystorePool.supportedRegions.
type Region struct {
	Name          string `json:"name" yaml:"name"`
	TechnicalName string `json:"technicalName" yaml:"technicalName"`
}

// ParseRegions resolves ref and reads CMK's value {"regions":[{"name",
// "technicalName"}]}. Unknown keys (in the object and in each region) are
// ignored: the value is CMK's. An empty list is valid (CMK sends
// {"regions":[]} when none are configured). A region needs a name; a missing
// technicalName defaults to the name.
func ParseRegions(ref *SourceRef) ([]Region, error) {
	raw, err := ref.Load()
	if err != nil {
		return nil, err
	}
	var v struct {
		Regions *[]Region `json:"regions"`
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return nil, fmt.Errorf(`want {"regions":[{"name":..,"technicalName":..}]}: %w`, err)
	}
	if v.Regions == nil {
		return nil, fmt.Errorf(`want {"regions":[...]}: key "regions" is missing`)
	}
	regions := *v.Regions
	if len(regions) > MaxRegions {
		return nil, fmt.Errorf("%d regions exceed the limit of %d", len(regions), MaxRegions)
	}
	out := make([]Region, 0, len(regions))
	for i, r := range regions {
		r.Name = strings.TrimSpace(r.Name)
		r.TechnicalName = strings.TrimSpace(r.TechnicalName)
		if r.Name == "" {
			return nil, fmt.Errorf("regions[%d]: name is empty", i)
		}
		if r.TechnicalName == "" {
			r.TechnicalName = r.Name
		}
		out = append(out, r)
	}
	return out, nil
}

// SupportedRegionsRef is the SourceRef CMK injects for regions: embedded,
// value {"regions":[...]} (never null: nil becomes []).
func SupportedRegionsRef(regions []Region) (SourceRef, error) {
	if regions == nil {
		regions = []Region{}
	}
	value, err := json.Marshal(map[string]any{"regions": regions})
	if err != nil {
		return SourceRef{}, err
	}
	return SourceRef{Source: SourceEmbedded, Value: string(value)}, nil
}

// MergeSupportedRegions returns yamlConfiguration with `supportedregions`
// set the way CMK does it: the YAML is decoded into a map with yaml.v3, the
// key is set (replacing any existing one) and the map is re-encoded with
// yaml.v3. The result is byte for byte what a plugin receives from CMK,
// including the empty env/file fields and the map's sorted key order.
func MergeSupportedRegions(yamlConfiguration string, regions []Region) (string, error) {
	ref, err := SupportedRegionsRef(regions)
	if err != nil {
		return "", fmt.Errorf("encoding supported regions: %w", err)
	}
	doc := map[string]any{}
	if yamlConfiguration != "" {
		if err := yamlv3.Unmarshal([]byte(yamlConfiguration), &doc); err != nil {
			return "", fmt.Errorf("failed to parse plugin YamlConfiguration: %w", err)
		}
		if doc == nil {
			doc = map[string]any{}
		}
	}
	doc[SupportedRegionsKey] = ref
	out, err := yamlv3.Marshal(doc)
	if err != nil {
		return "", fmt.Errorf("failed to marshal merged plugin configuration: %w", err)
	}
	return string(out), nil
}
