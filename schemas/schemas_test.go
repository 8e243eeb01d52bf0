package schemas

import (
	"encoding/json"
	"io/fs"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// freeForm are the only object properties whose content a schema leaves open: hook and plugin
// parameters, plugin stats, and an event's kind-specific data.
var freeForm = []string{"params", "stats", "data"}

// TestEverySchemaIsDocumentedAndStrict checks every schema file of this directory, so a new one
// is covered without a test of its own: draft 2020-12, $id after its file name, a title and a
// description, a description on every definition and property, no unknown properties
// anywhere, and each schema compiles.
func TestEverySchemaIsDocumentedAndStrict(t *testing.T) {
	t.Parallel()
	files, err := fs.Glob(FS, "*.json")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, file := range files {
		raw, err := FS.ReadFile(file)
		require.NoError(t, err)
		var doc map[string]any
		require.NoError(t, json.Unmarshal(raw, &doc), file)
		require.Equal(t, "https://json-schema.org/draft/2020-12/schema", doc["$schema"], file)
		require.Equal(t, "https://confiture.dev/schemas/"+file, doc["$id"], file)
		require.NotEmpty(t, doc["title"], file)
		require.NotEmpty(t, doc["description"], file)
		if defs, ok := doc["$defs"].(map[string]any); ok {
			for name, d := range defs {
				require.NotEmpty(t, d.(map[string]any)["description"], "%s $defs/%s", file, name)
			}
		}
		var walk func(path, key string, node any)
		walk = func(path, key string, node any) {
			switch n := node.(type) {
			case map[string]any:
				if props, ok := n["properties"].(map[string]any); ok {
					require.Equal(t, false, n["additionalProperties"], "%s%s: additionalProperties must be false", file, path)
					for name, p := range props {
						desc, _ := p.(map[string]any)["description"].(string)
						require.NotEmpty(t, desc, "%s%s/properties/%s has no description", file, path, name)
					}
				}
				if n["type"] == "object" && n["properties"] == nil && path != "" {
					require.Contains(t, freeForm, key, "%s%s: only %v may be free-form objects", file, path, freeForm)
				}
				for k, v := range n {
					walk(path+"/"+k, k, v)
				}
			case []any:
				for i, v := range n {
					walk(path+"/"+strconv.Itoa(i), key, v)
				}
			}
		}
		walk("", "", doc)
	}
	// Each compiles, with the others it refers to (api.v1.json uses event.v1.json's).
	all := map[string]string{}
	for _, file := range files {
		all[file] = "https://confiture.dev/schemas/" + file
	}
	_, err = Compile(all)
	require.NoError(t, err)
	require.True(t, slices.Contains(files, "request.v1.json"))
}
