package keystoreconfig_test

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/apeirora/apeiro-cmk/pkg/plugins/keystore/keystoreconfig"
)

// cmkInjected is what CMK (openkcm/cmk 788ec3c, plugin_config_merge.go)
// hands to Configure for a KeystoreProvider whose yamlConfiguration is
// `dir: /data` and whose keystorePool.supportedRegions has one region.
const cmkInjected = `dir: /data
supportedregions:
    source: embedded
    env: ""
    file:
        path: ""
        format: ""
        jsonPath: ""
    value: '{"regions":[{"name":"eu","technicalName":"eu-central-1"}]}'
`

type testConfig struct {
	Dir                       string                    `json:"dir,omitempty"`
	Secret                    *keystoreconfig.SourceRef `json:"secret,omitempty"`
	Regions                   []string                  `json:"regions,omitempty"`
	DefaultDeletionWindowDays *int32                    `json:"defaultDeletionWindowDays,omitempty"`
	SupportedRegions          *keystoreconfig.SourceRef `json:"supportedregions,omitempty"`
	Nested                    *struct {
		A string `json:"a"`
	} `json:"nested,omitempty"`
}

func TestMergeSupportedRegionsIsCMKByteForByte(t *testing.T) {
	got, err := keystoreconfig.MergeSupportedRegions("dir: /data\n", []keystoreconfig.Region{{Name: "eu", TechnicalName: "eu-central-1"}})
	if err != nil {
		t.Fatal(err)
	}
	if got != cmkInjected {
		t.Fatalf("merged YAML differs from CMK's:\n got: %q\nwant: %q", got, cmkInjected)
	}
}

func TestMergeSupportedRegionsCases(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		regions  []keystoreconfig.Region
		want     string
		wantErr  string
	}{
		{name: "empty config, nil regions", in: "", want: "supportedregions:\n    source: embedded\n    env: \"\"\n    file:\n        path: \"\"\n        format: \"\"\n        jsonPath: \"\"\n    value: '{\"regions\":[]}'\n"},
		{name: "null document", in: "~\n", want: "supportedregions:\n    source: embedded\n    env: \"\"\n    file:\n        path: \"\"\n        format: \"\"\n        jsonPath: \"\"\n    value: '{\"regions\":[]}'\n"},
		{name: "replaces an existing key and sorts keys", in: "zeta: 1\nsupportedregions: old\nalpha: [a, b]\n",
			want: "alpha:\n    - a\n    - b\nsupportedregions:\n    source: embedded\n    env: \"\"\n    file:\n        path: \"\"\n        format: \"\"\n        jsonPath: \"\"\n    value: '{\"regions\":[]}'\nzeta: 1\n"},
		// The profile's YAML: comments are dropped, ${VAR:-default} kept verbatim.
		{name: "profile entry", in: "# Shared with the operations entry\ndir: ${APEIRO_LOCAL_KEYSTORE_DIR:-/var/lib/apeiro-cmk/keystore-local}\n",
			regions: []keystoreconfig.Region{{Name: "eu", TechnicalName: "eu-central-1"}},
			want:    "dir: ${APEIRO_LOCAL_KEYSTORE_DIR:-/var/lib/apeiro-cmk/keystore-local}\nsupportedregions:\n    source: embedded\n    env: \"\"\n    file:\n        path: \"\"\n        format: \"\"\n        jsonPath: \"\"\n    value: '{\"regions\":[{\"name\":\"eu\",\"technicalName\":\"eu-central-1\"}]}'\n"},
		{name: "not a mapping", in: "- a\n- b\n", wantErr: "failed to parse plugin YamlConfiguration"},
		{name: "invalid YAML", in: "a: [\n", wantErr: "failed to parse plugin YamlConfiguration"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := keystoreconfig.MergeSupportedRegions(tc.in, tc.regions)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("got %q, %v\nwant %q", got, err, tc.want)
			}
		})
	}
}

func TestDecodeCMKInjected(t *testing.T) {
	var c testConfig
	w, err := keystoreconfig.Decode(cmkInjected, &c)
	if err != nil {
		t.Fatal(err)
	}
	if len(w) != 0 {
		t.Fatalf("warnings = %v", w)
	}
	regions, err := keystoreconfig.ParseRegions(c.SupportedRegions)
	if err != nil {
		t.Fatal(err)
	}
	if want := []keystoreconfig.Region{{Name: "eu", TechnicalName: "eu-central-1"}}; !reflect.DeepEqual(regions, want) || c.Dir != "/data" {
		t.Fatalf("regions = %v dir = %q", regions, c.Dir)
	}
}

func TestDecodeStrictness(t *testing.T) {
	for _, tc := range []struct {
		name     string
		yaml     string
		wantErr  string
		warnings keystoreconfig.Warnings
	}{
		{name: "empty", yaml: ""},
		{name: "blank", yaml: "  \n"},
		{name: "null", yaml: "~"},
		{name: "declared keys case-insensitively", yaml: "Dir: /x\nREGIONS: [a]"},
		{name: "future top-level CMK key is ignored", yaml: "dir: /x\nlandscape: {name: eu10}\n", warnings: keystoreconfig.Warnings{"landscape"}},
		{name: "future SourceRef keys are ignored", yaml: "supportedregions: {source: embedded, value: '{\"regions\":[]}', keyId: k, file: {path: '', mode: 0600}}",
			warnings: keystoreconfig.Warnings{"supportedregions.file.mode", "supportedregions.keyId"}},
		{name: "typo of a declared key", yaml: "dri: /x", wantErr: `unknown key "dri" (did you mean "dir"?)`},
		{name: "typo with separators", yaml: "default_deletion_window_days: 3", wantErr: `did you mean "defaultDeletionWindowDays"`},
		{name: "typo two edits", yaml: "defaultDeletonWindowDay: 3", wantErr: `did you mean "defaultDeletionWindowDays"`},
		{name: "typo of supportedregions", yaml: "supportedregion: {}", wantErr: `did you mean "supportedregions"`},
		{name: "unknown key in our own nested struct", yaml: "nested: {a: x, b: y}", wantErr: `unknown field "b"`},
		{name: "wrong type", yaml: "regions: eu", wantErr: "invalid configuration"},
		{name: "wrong type inside SourceRef", yaml: "secret: {source: [env]}", wantErr: "source: must be a string"},
		{name: "SourceRef not a mapping", yaml: "secret: abc", wantErr: "must be a mapping"},
		{name: "duplicate key", yaml: "dir: a\ndir: b", wantErr: "invalid YAML"},
		{name: "not a mapping", yaml: "- a", wantErr: "must be a YAML mapping"},
		{name: "scalar", yaml: "hello", wantErr: "must be a YAML mapping"},
		{name: "invalid YAML", yaml: "a: [", wantErr: "invalid YAML"},
		{name: "too large", yaml: "dir: " + strings.Repeat("a", keystoreconfig.MaxConfigBytes), wantErr: "more than the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var c testConfig
			w, err := keystoreconfig.Decode(tc.yaml, &c)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(w, tc.warnings) {
				t.Fatalf("warnings = %#v, want %#v", w, tc.warnings)
			}
		})
	}
}

func TestDecodeNeedsStructPointer(t *testing.T) {
	var m map[string]any
	if _, err := keystoreconfig.Decode("a: b", &m); err == nil {
		t.Fatal("want error for a non-struct target")
	}
}

func TestSourceRefLoad(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	plain := write("plain", "s3cret\n")
	js := write("creds.json", `{"data":{"secrets":[{"v":"deep"}],"n":3,"dot.key":"dotted"}}`)
	big := write("big", strings.Repeat("x", keystoreconfig.MaxFileBytes+1))
	t.Setenv("KSCFG_TEST_A", "from-a")
	t.Setenv("KSCFG_TEST_EMPTY", "")

	file := func(p, format, jp string) keystoreconfig.FileRef {
		return keystoreconfig.FileRef{Path: p, Format: format, JSONPath: jp}
	}
	for _, tc := range []struct {
		name    string
		ref     *keystoreconfig.SourceRef
		want    string
		wantErr string
	}{
		{name: "nil", ref: nil, wantErr: "missing"},
		{name: "embedded", ref: &keystoreconfig.SourceRef{Source: "embedded", Value: "v"}, want: "v"},
		{name: "default is embedded", ref: &keystoreconfig.SourceRef{Value: "v"}, want: "v"},
		{name: "case-insensitive source", ref: &keystoreconfig.SourceRef{Source: "EMBEDDED", Value: "v"}, want: "v"},
		{name: "env", ref: &keystoreconfig.SourceRef{Source: "env", Env: "KSCFG_TEST_A"}, want: "from-a"},
		{name: "env named by value (common-sdk order)", ref: &keystoreconfig.SourceRef{Source: "env", Value: "KSCFG_TEST_A", Env: "KSCFG_TEST_EMPTY"}, want: "from-a"},
		{name: "env empty", ref: &keystoreconfig.SourceRef{Source: "env", Env: "KSCFG_TEST_EMPTY"}, wantErr: "KSCFG_TEST_EMPTY is not set"},
		{name: "env unset", ref: &keystoreconfig.SourceRef{Source: "env", Env: "KSCFG_TEST_NOPE"}, wantErr: "KSCFG_TEST_NOPE is not set"},
		{name: "env without name", ref: &keystoreconfig.SourceRef{Source: "env"}, wantErr: "needs `env`"},
		{name: "file", ref: &keystoreconfig.SourceRef{Source: "file", File: file(plain, "", "")}, want: "s3cret\n"},
		{name: "file binary", ref: &keystoreconfig.SourceRef{Source: "file", File: file(plain, "binary", "")}, want: "s3cret\n"},
		{name: "file json whole", ref: &keystoreconfig.SourceRef{Source: "file", File: file(js, "json", "")}, want: `{"data":{"secrets":[{"v":"deep"}],"n":3,"dot.key":"dotted"}}`},
		{name: "file json path", ref: &keystoreconfig.SourceRef{Source: "file", File: file(js, "json", "$.data.secrets[0].v")}, want: "deep"},
		{name: "file json quoted key", ref: &keystoreconfig.SourceRef{Source: "file", File: file(js, "json", "$.data['dot.key']")}, want: "dotted"},
		{name: "file json non-string", ref: &keystoreconfig.SourceRef{Source: "file", File: file(js, "json", "$.data.n")}, wantErr: "not a string"},
		{name: "file json missing key", ref: &keystoreconfig.SourceRef{Source: "file", File: file(js, "json", "$.nope")}, wantErr: `key "nope" not found`},
		{name: "file json index out of range", ref: &keystoreconfig.SourceRef{Source: "file", File: file(js, "json", "$.data.secrets[5]")}, wantErr: "out of range"},
		{name: "file json filter unsupported", ref: &keystoreconfig.SourceRef{Source: "file", File: file(js, "json", "$.data.secrets[?(@.v)]")}, wantErr: "not supported"},
		{name: "file json bad path", ref: &keystoreconfig.SourceRef{Source: "file", File: file(js, "json", "data")}, wantErr: "must start with $"},
		{name: "file not json", ref: &keystoreconfig.SourceRef{Source: "file", File: file(plain, "json", "$.a")}, wantErr: "not JSON"},
		{name: "file unknown format", ref: &keystoreconfig.SourceRef{Source: "file", File: file(plain, "pem", "")}, wantErr: `format "pem" is not supported`},
		{name: "file missing path", ref: &keystoreconfig.SourceRef{Source: "file"}, wantErr: "needs `file.path`"},
		{name: "file absent", ref: &keystoreconfig.SourceRef{Source: "file", File: file(filepath.Join(dir, "nope"), "", "")}, wantErr: "reading source file"},
		{name: "file too large", ref: &keystoreconfig.SourceRef{Source: "file", File: file(big, "", "")}, wantErr: "larger than"},
		{name: "unknown source", ref: &keystoreconfig.SourceRef{Source: "vault"}, wantErr: `unknown source "vault"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.ref.Load()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || string(got) != tc.want {
				t.Fatalf("got %q, %v want %q", got, err, tc.want)
			}
		})
	}
	s, err := (&keystoreconfig.SourceRef{Source: "file", File: file(plain, "", "")}).LoadString()
	if err != nil || s != "s3cret" {
		t.Fatalf("LoadString = %q, %v", s, err)
	}
}

func TestParseRegions(t *testing.T) {
	for _, tc := range []struct {
		name, value string
		want        []keystoreconfig.Region
		wantErr     string
	}{
		{name: "CMK shape", value: `{"regions":[{"name":"eu","technicalName":"eu-central-1"}]}`, want: []keystoreconfig.Region{{Name: "eu", TechnicalName: "eu-central-1"}}},
		{name: "empty list", value: `{"regions":[]}`, want: []keystoreconfig.Region{}},
		{name: "future fields ignored", value: `{"regions":[{"name":"eu","technicalName":"t","displayName":"Europe"}],"version":2}`, want: []keystoreconfig.Region{{Name: "eu", TechnicalName: "t"}}},
		{name: "technicalName defaults to name", value: `{"regions":[{"name":"eu"}]}`, want: []keystoreconfig.Region{{Name: "eu", TechnicalName: "eu"}}},
		{name: "missing regions key", value: `{}`, wantErr: `"regions" is missing`},
		{name: "empty name", value: `{"regions":[{"technicalName":"t"}]}`, wantErr: "regions[0]: name is empty"},
		{name: "not JSON", value: `regions: []`, wantErr: "want {"},
		{name: "wrong type", value: `{"regions":"eu"}`, wantErr: "want {"},
		{name: "too many", value: `{"regions":[` + strings.TrimSuffix(strings.Repeat(`{"name":"a"},`, keystoreconfig.MaxRegions+1), ",") + `]}`, wantErr: "exceed the limit"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := keystoreconfig.ParseRegions(&keystoreconfig.SourceRef{Source: "embedded", Value: tc.value})
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("err = %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %#v, %v want %#v", got, err, tc.want)
			}
		})
	}
}

// FuzzDecode: any input either fails with an error or decodes; it never
// panics, and whatever decodes re-merges with CMK's injection and decodes
// again with the same regions.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{cmkInjected, "", "~", "dir: x", "dri: x", "secret: {source: env, env: X}", "a: [", "- 1",
		"supportedregions: {source: file, file: {path: /dev/null, format: json, jsonPath: '$.a[0]'}}",
		"supportedregions: {value: '{\"regions\":[{\"name\":\"a\"}]}', x: 1}"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		var c testConfig
		if _, err := keystoreconfig.Decode(in, &c); err != nil {
			return
		}
		merged, err := keystoreconfig.MergeSupportedRegions(in, []keystoreconfig.Region{{Name: "r", TechnicalName: "t"}})
		if err != nil {
			return // yaml.v3 and the strict decoder differ on some inputs (e.g. merge keys); both refuse or accept clearly
		}
		var c2 testConfig
		if _, err := keystoreconfig.Decode(merged, &c2); err != nil {
			// Keys that only differ by case are one key to encoding/json.
			if strings.Contains(err.Error(), "duplicate") || strings.Contains(err.Error(), "did you mean") {
				return
			}
			t.Fatalf("merged config does not decode: %v\n%q", err, merged)
		}
		regions, err := keystoreconfig.ParseRegions(c2.SupportedRegions)
		if err != nil || len(regions) != 1 || regions[0].Name != "r" {
			t.Fatalf("regions after merge = %v, %v", regions, err)
		}
	})
}

// FuzzSourceRef: hostile SourceRef mappings never panic, and an embedded
// reference always loads.
func FuzzSourceRef(f *testing.F) {
	f.Add(`{"source":"embedded","env":"","file":{"path":"","format":"","jsonPath":""},"value":"x"}`)
	f.Add(`{"source":1}`)
	f.Add(`{"SOURCE":"embedded","file":{"jsonpath":"$","extra":[1]},"new":{}}`)
	f.Add(`[]`)
	f.Fuzz(func(t *testing.T, js string) {
		var r keystoreconfig.SourceRef
		if err := r.UnmarshalJSON([]byte(js)); err == nil && strings.EqualFold(r.Source, "embedded") {
			if v, err := r.Load(); err != nil || string(v) != r.Value {
				t.Fatalf("embedded Load = %q, %v", v, err)
			}
		}
	})
}

func BenchmarkDecodeCMKInjected(b *testing.B) {
	for b.Loop() {
		var c testConfig
		if _, err := keystoreconfig.Decode(cmkInjected, &c); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkMergeSupportedRegions(b *testing.B) {
	regions := []keystoreconfig.Region{{Name: "eu", TechnicalName: "eu-central-1"}, {Name: "us", TechnicalName: "us-east-1"}}
	for b.Loop() {
		if _, err := keystoreconfig.MergeSupportedRegions("dir: /data\n", regions); err != nil {
			b.Fatal(err)
		}
	}
}
