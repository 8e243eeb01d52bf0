package plugin

import (
	"encoding/json"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/schemas"
)

func loadSchema(t *testing.T, file string) map[string]any {
	t.Helper()
	raw, err := schemas.FS.ReadFile(file)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(raw, &doc))
	return doc
}

// schemaType is the JSON type a Go field must have in the schema.
func schemaType(typ reflect.Type) string {
	switch {
	case typ == reflect.TypeFor[json.RawMessage]():
		return "object"
	case typ.Kind() == reflect.String:
		return "string"
	case typ.Kind() == reflect.Int || typ.Kind() == reflect.Int64:
		return "integer"
	case typ.Kind() == reflect.Bool:
		return "boolean"
	case typ.Kind() == reflect.Map, typ.Kind() == reflect.Pointer && typ.Elem().Kind() == reflect.Struct:
		return "object"
	}
	return "unsupported " + typ.String()
}

// propType is the JSON type a schema property allows, following $ref and reading const/enum.
func propType(t *testing.T, doc, prop map[string]any) string {
	t.Helper()
	if ref, ok := prop["$ref"].(string); ok {
		name, found := strings.CutPrefix(ref, "#/$defs/")
		require.True(t, found, "unexpected $ref %q", ref)
		return doc["$defs"].(map[string]any)[name].(map[string]any)["type"].(string)
	}
	if typ, ok := prop["type"].(string); ok {
		return typ
	}
	values := []any{prop["const"]}
	if enum, ok := prop["enum"].([]any); ok {
		values = enum
	}
	for _, v := range values {
		_, isString := v.(string)
		require.True(t, isString, "only string constants are expected: %v", prop)
	}
	return "string"
}

func TestGoTypesMatchSchemas(t *testing.T) {
	t.Parallel()
	req := loadSchema(t, RequestSchemaFile)
	res := loadSchema(t, ResultSchemaFile)
	cases := []struct {
		name     string
		typ      reflect.Type
		doc, sch map[string]any
	}{
		{"Request", reflect.TypeFor[Request](), req, req},
		{"Result", reflect.TypeFor[Result](), res, res},
		{"Error", reflect.TypeFor[Error](), res, res["$defs"].(map[string]any)["Error"].(map[string]any)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			props := c.sch["properties"].(map[string]any)
			var goNames, goRequired []string
			for i := range c.typ.NumField() {
				f := c.typ.Field(i)
				tag, ok := f.Tag.Lookup("json")
				require.True(t, ok, "%s.%s has no json tag", c.name, f.Name)
				name, opts, _ := strings.Cut(tag, ",")
				goNames = append(goNames, name)
				if !strings.Contains(","+opts+",", ",omitempty,") {
					goRequired = append(goRequired, name)
				}
				prop, ok := props[name].(map[string]any)
				require.True(t, ok, "%s.%s (%s) is not in the schema", c.name, f.Name, name)
				require.Equal(t, schemaType(f.Type), propType(t, c.doc, prop), "JSON type of %s.%s", c.name, f.Name)
				if f.Type.Kind() == reflect.Pointer {
					require.Equal(t, "#/$defs/"+f.Type.Elem().Name(), prop["$ref"], "%s.%s", c.name, f.Name)
				}
			}
			var schemaNames []string
			for name := range props {
				schemaNames = append(schemaNames, name)
			}
			var required []string
			for _, r := range c.sch["required"].([]any) {
				required = append(required, r.(string))
			}
			slices.Sort(goNames)
			slices.Sort(schemaNames)
			slices.Sort(goRequired)
			slices.Sort(required)
			require.Equal(t, schemaNames, goNames, "json names of %s vs properties of its schema", c.name)
			require.Equal(t, required, goRequired, "fields of %s without omitempty vs required of its schema", c.name)
		})
	}
	require.Equal(t, RequestSchemaV1, req["properties"].(map[string]any)["schema"].(map[string]any)["const"])
	require.Equal(t, ResultSchemaV1, res["properties"].(map[string]any)["schema"].(map[string]any)["const"])
	var phases []string
	for _, p := range req["properties"].(map[string]any)["phase"].(map[string]any)["enum"].([]any) {
		phases = append(phases, p.(string))
	}
	require.Equal(t, hooks.HookPhases, phases)
}

func TestFullResultValidates(t *testing.T) {
	t.Parallel()
	full := Result{
		Schema: ResultSchemaV1, Success: true, RowsAffected: 5, Stats: map[string]any{"a": 1},
		Message: "ok", Error: &Error{Code: "x.y-z", Message: "detail"},
	}
	b, err := json.Marshal(full)
	require.NoError(t, err)
	got, err := decodeResult(b, "")
	require.NoError(t, err)
	require.Equal(t, int64(5), got.RowsAffected)
	require.Equal(t, &Error{Code: "x.y-z", Message: "detail"}, got.Error)

	minimal, err := decodeResult([]byte(" \n{\"success\": false, \"schema\": \"confiture.plugin-result/v1\"}\n\n"), "")
	require.NoError(t, err)
	require.False(t, minimal.Success)
}

func TestRequestSchemaRejectsBadRequests(t *testing.T) {
	t.Parallel()
	p, _ := newPlugin(t, okResult, "")
	h, err := p.newHook(nil)
	require.NoError(t, err)
	hc := hookContext(nil)
	hc.Phase = "ddl" // hooks never run in ddl
	_, err = h.Run(testCtx(t), hc)
	require.ErrorContains(t, err, "request does not match confiture.plugin-request/v1")
	require.ErrorContains(t, err, "/phase")
	require.False(t, hooks.Retryable(err), "the worker's own bug is not retried")
}
