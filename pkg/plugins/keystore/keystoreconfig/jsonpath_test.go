package keystoreconfig

import "testing"

// FuzzJSONQuery: arbitrary documents and paths give a string or an error,
// never a panic or a hang.
func FuzzJSONQuery(f *testing.F) {
	f.Add(`{"a":[{"b":"c"}]}`, "$.a[0].b")
	f.Add(`{"a.b":"c"}`, "$['a.b']")
	f.Add(`[1,2]`, "$[1]")
	f.Add(`"s"`, "$")
	f.Add(`{}`, "$..a[*]")
	f.Fuzz(func(t *testing.T, doc, path string) {
		_, _ = jsonQuery([]byte(doc), path)
	})
}
