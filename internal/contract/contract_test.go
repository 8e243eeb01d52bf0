package contract

import (
	"encoding/json"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"reflect"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/schemas"
)

// --- helpers ---------------------------------------------------------------------------------

func loadSchema(t testing.TB, file string) map[string]any {
	t.Helper()
	raw, err := schemas.FS.ReadFile(file)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, json.Unmarshal(raw, &doc))
	return doc
}

func def(t testing.TB, doc map[string]any, name string) map[string]any {
	t.Helper()
	defs, ok := doc["$defs"].(map[string]any)
	require.True(t, ok, "schema has no $defs")
	d, ok := defs[name].(map[string]any)
	require.True(t, ok, "schema has no $defs/%s", name)
	return d
}

func stringList(t testing.TB, v any) []string {
	t.Helper()
	arr, ok := v.([]any)
	require.True(t, ok, "want a JSON array, got %T", v)
	out := make([]string, 0, len(arr))
	for _, x := range arr {
		s, ok := x.(string)
		require.True(t, ok, "want strings, got %T", x)
		out = append(out, s)
	}
	return out
}

type jsonField struct {
	name      string
	omitempty bool
	typ       reflect.Type
}

func jsonFields(t testing.TB, typ reflect.Type) []jsonField {
	t.Helper()
	var out []jsonField
	for i := range typ.NumField() {
		f := typ.Field(i)
		if !f.IsExported() {
			continue
		}
		tag, ok := f.Tag.Lookup("json")
		require.True(t, ok, "%s.%s has no json tag", typ.Name(), f.Name)
		name, opts, _ := strings.Cut(tag, ",")
		require.NotEqual(t, "-", name, "%s.%s is not part of the contract", typ.Name(), f.Name)
		require.NotEmpty(t, name, "%s.%s has no json name", typ.Name(), f.Name)
		out = append(out, jsonField{name: name, omitempty: strings.Contains(","+opts+",", ",omitempty,"), typ: f.Type})
	}
	return out
}

var rawMessageType = reflect.TypeFor[json.RawMessage]()

// schemaTypeOf is the JSON type a Go field must have in the schema, and the $defs name it must
// refer to for nested contract structs.
func schemaTypeOf(typ reflect.Type) (jsonType, ref string) {
	switch {
	case typ == rawMessageType:
		return "object", ""
	case typ == reflect.TypeFor[time.Time]():
		return "string", ""
	}
	switch typ.Kind() {
	case reflect.String:
		return "string", ""
	case reflect.Int, reflect.Int32, reflect.Int64:
		return "integer", ""
	case reflect.Float32, reflect.Float64:
		return "number", ""
	case reflect.Bool:
		return "boolean", ""
	case reflect.Map:
		return "object", ""
	case reflect.Pointer:
		if typ.Elem().Kind() == reflect.Struct {
			return "object", typ.Elem().Name()
		}
		return schemaTypeOf(typ.Elem()) // an optional scalar, absent when nil
	case reflect.Slice:
		return "array", ""
	}
	return "unsupported " + typ.String(), ""
}

// propType is the JSON type a schema property allows, following $ref and reading const/enum.
func propType(t testing.TB, doc, prop map[string]any) (jsonType, ref string) {
	t.Helper()
	if r, ok := prop["$ref"].(string); ok {
		name, found := strings.CutPrefix(r, "#/$defs/")
		require.True(t, found, "unexpected $ref %q", r)
		typ, _ := def(t, doc, name)["type"].(string)
		return typ, name
	}
	if typ, ok := prop["type"].(string); ok {
		return typ, ""
	}
	values := []any{prop["const"]}
	if enum, ok := prop["enum"].([]any); ok {
		values = enum
	}
	kinds := map[string]bool{}
	for _, v := range values {
		switch v.(type) {
		case string:
			kinds["string"] = true
		case float64:
			kinds["number"] = true
		case bool:
			kinds["boolean"] = true
		default:
			kinds[fmt.Sprintf("%T", v)] = true
		}
	}
	require.Len(t, kinds, 1, "property has no single type: %v", prop)
	for k := range kinds {
		return k, ""
	}
	return "", ""
}

// requireEveryFieldCovered fails unless every field of v's type, recursively, holds a
// non-zero value somewhere in v (in at least one element of a slice), so that the "fully
// populated" fixtures stay fully populated when fields are added.
// requireEveryFieldCovered requires the fixtures vs (of one type) to set every field between
// them.
func requireEveryFieldCovered(t testing.TB, vs ...any) {
	t.Helper()
	covered := map[string]bool{}
	var walk func(v reflect.Value, path string)
	walk = func(v reflect.Value, path string) {
		if !v.IsValid() || v.IsZero() || (v.Kind() == reflect.Slice && v.Len() == 0) || (v.Kind() == reflect.Map && v.Len() == 0) {
			return
		}
		covered[path] = true
		switch v.Kind() {
		case reflect.Pointer:
			walk(v.Elem(), path)
		case reflect.Struct:
			if v.Type() == reflect.TypeFor[time.Time]() {
				return
			}
			for i := range v.NumField() {
				if f := v.Type().Field(i); f.IsExported() {
					walk(v.Field(i), path+"."+f.Name)
				}
			}
		case reflect.Slice:
			if v.Type().Elem().Kind() == reflect.Struct {
				for i := range v.Len() {
					walk(v.Index(i), path+"[]")
				}
			}
		}
	}
	var all []string
	var fields func(typ reflect.Type, path string)
	fields = func(typ reflect.Type, path string) {
		all = append(all, path)
		switch {
		case typ.Kind() == reflect.Pointer:
			fields(typ.Elem(), path)
			all = all[:len(all)-1] // the pointer and its struct share the path
		case typ.Kind() == reflect.Struct && typ != reflect.TypeFor[time.Time]():
			for i := range typ.NumField() {
				if f := typ.Field(i); f.IsExported() {
					fields(f.Type, path+"."+f.Name)
				}
			}
		case typ.Kind() == reflect.Slice && typ.Elem().Kind() == reflect.Struct:
			fields(typ.Elem(), path+"[]")
		}
	}
	for _, v := range vs {
		rv := reflect.ValueOf(v)
		walk(rv, rv.Type().String())
	}
	rv := reflect.ValueOf(vs[0])
	fields(rv.Type(), rv.Type().String())
	for _, p := range all {
		require.True(t, covered[p], "fixture leaves %s unset", p)
	}
}

func validRequest() *Request {
	up1 := "CREATE TABLE users (id bigint PRIMARY KEY, email text);"
	up2 := "ALTER TABLE users ADD COLUMN email_lower text;"
	return &Request{
		Schema:      RequestSchemaV1,
		ID:          "deploy-2024.06.01:42",
		Target:      "default",
		Direction:   DirectionUp,
		To:          "002",
		DryRun:      true,
		Force:       true,
		RequestedBy: "alice@example.com",
		// Not a valid signature: decoding does not verify one (the worker's policy does).
		Signature: &Signature{
			KeyID: "ci@example.com", Alg: SignatureAlgEd25519, SignedAt: "2024-06-01T12:00:00Z",
			ExpiresAt: "2024-06-01T12:10:00Z", Sig: strings.Repeat("A", 86) + "==",
		},
		Migrations: []Migration{
			{
				Version:  "001",
				Name:     "create_users",
				UpSQL:    up1,
				DownSQL:  "DROP TABLE users;",
				Checksum: Checksum(up1),
				Hooks: []HookSpec{
					{Phase: PhaseBeforeValidation, Name: "check_empty", Hook: "sql.assert", Params: map[string]any{"sql": "SELECT true"}, Priority: -5, DependsOn: []string{"check_owner"}},
					{Phase: PhaseBeforeValidation, Name: "check_owner", Hook: "sql.assert", Params: map[string]any{"sql": "SELECT true"}, Priority: 10},
				},
			},
			{
				Version:  "002",
				Name:     "add-email-lower",
				UpSQL:    up2,
				DownSQL:  "ALTER TABLE users DROP COLUMN email_lower;",
				Checksum: Checksum(up2),
				Hooks: []HookSpec{
					{
						Phase: PhaseAfterDDL, Name: "backfill.email_lower", Hook: "backfill",
						Params: map[string]any{
							"table": "users", "batch_size": float64(1000), "throttle": true,
							"set": map[string]any{"email_lower": "lower(email)"}, "keys": []any{"id"},
						},
						Priority: 1, DependsOn: []string{"rebuild"},
					},
					{Phase: PhaseAfterDDL, Name: "rebuild", Hook: "sql", Params: map[string]any{"sql": "ANALYZE users"}, Priority: 2},
					{Phase: PhaseOnError, Name: "notify", Hook: "noop"},
				},
			},
		},
	}
}

func fullEvent(kind string) *Event {
	return &Event{
		Schema:       EventSchemaV1,
		ID:           uuid.NewString(),
		Time:         time.Date(2024, 6, 1, 12, 30, 45, 123456789, time.UTC),
		Kind:         kind,
		Run:          RunID("default", "deploy-42"),
		RequestID:    "deploy-42",
		Target:       "default",
		Migration:    "20240601120000_add_email",
		Version:      "20240601120000",
		Phase:        PhaseAfterDDL,
		Hook:         "backfill.email_lower",
		Attempt:      2,
		DurationMS:   1500,
		RowsAffected: 12000,
		Message:      "backfilled 12000 rows",
		Error:        &EventError{Code: CodeSQLError, Message: "deadlock detected", SQLState: "40P01", Retryable: true},
		Data:         json.RawMessage(`{"batches":12,"rows_done":12000,"rows_total":50000}`),
	}
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// --- Go types vs schemas ---------------------------------------------------------------------

func TestGoTypesMatchSchemas(t *testing.T) {
	t.Parallel()
	req := loadSchema(t, RequestSchemaFile)
	ev := loadSchema(t, EventSchemaFile)
	cases := []struct {
		name string
		typ  reflect.Type
		doc  map[string]any // the schema file, for $ref resolution
		sch  map[string]any // the object schema the type mirrors
	}{
		{"Request", reflect.TypeFor[Request](), req, req},
		{"Migration", reflect.TypeFor[Migration](), req, def(t, req, "Migration")},
		{"HookSpec", reflect.TypeFor[HookSpec](), req, def(t, req, "HookSpec")},
		{"Signature", reflect.TypeFor[Signature](), req, def(t, req, "Signature")},
		{"Event", reflect.TypeFor[Event](), ev, ev},
		{"EventError", reflect.TypeFor[EventError](), ev, def(t, ev, "EventError")},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			requireTypeMatchesSchema(t, tc.name, tc.typ, tc.doc, tc.sch)
		})
	}
}

// requireTypeMatchesSchema checks a Go struct against the object schema it mirrors, both ways:
// the same JSON names as properties, fields without omitempty exactly the required ones, the
// same JSON types, and nested structs as $refs to $defs of the same name.
func requireTypeMatchesSchema(t *testing.T, name string, typ reflect.Type, doc, sch map[string]any) {
	t.Helper()
	props, ok := sch["properties"].(map[string]any)
	require.True(t, ok, "schema of %s has no properties", name)

	var goNames, goRequired []string
	for _, f := range jsonFields(t, typ) {
		goNames = append(goNames, f.name)
		if !f.omitempty {
			goRequired = append(goRequired, f.name)
		}
	}
	var schemaNames []string
	for n := range props {
		schemaNames = append(schemaNames, n)
	}
	sort.Strings(goNames)
	sort.Strings(schemaNames)
	require.Equal(t, goNames, schemaNames, "json names of %s vs properties of its schema", name)

	required := stringList(t, sch["required"])
	sort.Strings(required)
	sort.Strings(goRequired)
	require.Equal(t, goRequired, required, "fields of %s without omitempty vs required of its schema", name)

	for _, f := range jsonFields(t, typ) {
		prop := props[f.name].(map[string]any)
		wantType, wantRef := schemaTypeOf(f.typ)
		gotType, gotRef := propType(t, doc, prop)
		require.Equal(t, wantType, gotType, "JSON type of %s.%s", name, f.name)
		require.Equal(t, wantRef, gotRef, "$ref of %s.%s", name, f.name)
		if f.typ.Kind() == reflect.Slice && f.typ != rawMessageType {
			items, ok := prop["items"].(map[string]any)
			require.True(t, ok, "%s.%s has no items", name, f.name)
			if f.typ.Elem().Kind() == reflect.Struct {
				require.Equal(t, "#/$defs/"+f.typ.Elem().Name(), items["$ref"], "items of %s.%s", name, f.name)
			} else {
				itemType, _ := propType(t, doc, items)
				elemType, _ := schemaTypeOf(f.typ.Elem())
				require.Equal(t, elemType, itemType, "items of %s.%s", name, f.name)
			}
		}
	}
}

// goConstants returns the string constants of contract.go whose name starts with prefix.
func goConstants(t testing.TB, prefix string) []string {
	t.Helper()
	return goConstantsIn(t, "contract.go", prefix)
}

// goConstantsIn returns the string constants of file whose name starts with prefix.
func goConstantsIn(t testing.TB, file, prefix string) []string {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
	require.NoError(t, err)
	var out []string
	ast.Inspect(f, func(n ast.Node) bool {
		spec, ok := n.(*ast.ValueSpec)
		if !ok {
			return true
		}
		for i, name := range spec.Names {
			if !strings.HasPrefix(name.Name, prefix) || i >= len(spec.Values) {
				continue
			}
			lit, ok := spec.Values[i].(*ast.BasicLit)
			require.True(t, ok, "%s is not a literal", name.Name)
			v, err := strconv.Unquote(lit.Value)
			require.NoError(t, err)
			out = append(out, v)
		}
		return true
	})
	return out
}

func TestSchemaEnumsMatchGo(t *testing.T) {
	t.Parallel()
	req := loadSchema(t, RequestSchemaFile)
	ev := loadSchema(t, EventSchemaFile)
	reqProps := req["properties"].(map[string]any)
	evProps := ev["properties"].(map[string]any)

	require.Equal(t, RequestSchemaV1, reqProps["schema"].(map[string]any)["const"])
	require.Equal(t, EventSchemaV1, evProps["schema"].(map[string]any)["const"])
	require.ElementsMatch(t, []string{DirectionUp, DirectionDown}, stringList(t, reqProps["direction"].(map[string]any)["enum"]))

	var hookPhases []string
	for _, p := range Phases {
		if p != PhaseDDL {
			hookPhases = append(hookPhases, p)
		}
	}
	hookProps := def(t, req, "HookSpec")["properties"].(map[string]any)
	require.Equal(t, hookPhases, stringList(t, hookProps["phase"].(map[string]any)["enum"]), "hook phases")
	require.Equal(t, append([]string{""}, Phases...), stringList(t, evProps["phase"].(map[string]any)["enum"]), "event phases")

	kinds := goConstants(t, "Kind")
	require.ElementsMatch(t, kinds, EventKinds, "EventKinds vs the Kind constants")
	require.Equal(t, EventKinds, stringList(t, evProps["kind"].(map[string]any)["enum"]), "event kinds")

	codes := goConstants(t, "Code")
	require.NotEmpty(t, codes)
	errProps := def(t, ev, "EventError")["properties"].(map[string]any)
	require.Equal(t, codes, stringList(t, errProps["code"].(map[string]any)["enum"]), "error codes")
}

// --- valid messages --------------------------------------------------------------------------

func TestRequestRoundTrip(t *testing.T) {
	t.Parallel()
	percent := validGroupRequest()
	percent.Rollout = &RolloutPolicy{WavePercent: 10, FailurePercent: 5}
	percent.DryRun = false
	adopt := validRequest()
	adopt.Adopt, adopt.AdoptTable = AdoptFlyway, "app.flyway_schema_history"
	adopt.Migrations[0].NoTransaction, adopt.Migrations[0].File = true, "v1/V1__create users.sql"
	sum := int32(-714045419)
	adopt.Migrations[0].FlywayChecksum = &sum
	adopt.Migrations[1].Version, adopt.Migrations[1].Name = "1.10.2", "add email (lower case)"
	requireEveryFieldCovered(t, validRequest(), validGroupRequest(), percent, adopt)
	for _, want := range []*Request{validRequest(), validGroupRequest(), percent, adopt} {
		got, err := DecodeRequest(mustJSON(t, want))
		require.NoError(t, err)
		require.Equal(t, want, got)

		again, err := DecodeRequest(mustJSON(t, got))
		require.NoError(t, err)
		require.Equal(t, got, again)
	}
}

// validGroupRequest is a dry-run request for a target group, with every rollout field set.
func validGroupRequest() *Request {
	r := validRequest()
	two, one := 2, 1
	r.Target, r.Group, r.DryRun = "", "tenants", true
	r.Rollout = &RolloutPolicy{Canary: &two, WaveSize: 50, MaxConcurrent: 20, PauseMS: 1000, FailureThreshold: &one, DryRunAll: true}
	return r
}

func TestRolloutRequestsRefusedWithAReason(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		edit func(r *Request)
		want string
	}{
		"target and group": {func(r *Request) { r.Group = "tenants" }, `names target "default" and group "tenants"`},
		"neither":          {func(r *Request) { r.Target = "" }, "names no target and no group"},
		"rollout without a group": {func(r *Request) { r.Rollout = &RolloutPolicy{MaxConcurrent: 2} },
			`rollout applies to a group; this request names target "default"`},
		"two wave sizes": {func(r *Request) {
			r.Target, r.Group, r.Rollout = "", "g", &RolloutPolicy{WaveSize: 2, WavePercent: 10}
		}, "wave_size or wave_percent, not both"},
		"two thresholds": {func(r *Request) {
			one := 1
			r.Target, r.Group, r.Rollout = "", "g", &RolloutPolicy{FailureThreshold: &one, FailurePercent: 10}
		}, "failure_threshold or failure_percent, not both"},
		"dry_run_all without a dry-run": {func(r *Request) {
			r.Target, r.Group, r.DryRun, r.Rollout = "", "g", false, &RolloutPolicy{DryRunAll: true}
		}, "dry_run_all applies to a dry-run request"},
	} {
		t.Run(name, func(t *testing.T) {
			r := validRequest()
			r.Signature = nil
			tc.edit(r)
			_, err := DecodeRequest(mustJSON(t, r))
			require.ErrorContains(t, err, tc.want)
			require.Equal(t, CodeInvalidRequest, err.(*DecodeError).Code)
		})
	}
}

func TestWaveSizesAndThresholds(t *testing.T) {
	t.Parallel()
	one, three, zero := 1, 3, 0
	def := DefaultRolloutPolicy()
	sizes, canary := def.WaveSizes(9, false)
	require.Equal(t, []int{1, 2, 2, 2, 2}, sizes, "canary 1, then 25%% of 8 (2) per wave")
	require.True(t, canary)
	sizes, _ = RolloutPolicy{Canary: &zero, WaveSize: 100}.Over(def).WaveSizes(250, false)
	require.Equal(t, []int{100, 100, 50}, sizes)
	sizes, canary = RolloutPolicy{Canary: &three}.Over(def).WaveSizes(2, false)
	require.Equal(t, []int{2}, sizes, "a canary larger than the group is the whole group")
	require.True(t, canary)
	sizes, canary = def.WaveSizes(40, true)
	require.Equal(t, []int{1}, sizes, "a dry-run runs the canary")
	require.True(t, canary)
	sizes, _ = RolloutPolicy{DryRunAll: true}.Over(def).WaveSizes(40, true)
	require.Equal(t, []int{40}, sizes)

	require.False(t, def.Tolerates(1, 10, false), "the default tolerates no failure")
	require.False(t, RolloutPolicy{FailureThreshold: &three}.Tolerates(1, 10, true), "a canary tolerates none")
	require.True(t, RolloutPolicy{FailureThreshold: &one}.Tolerates(1, 10, false))
	require.False(t, RolloutPolicy{FailureThreshold: &one}.Tolerates(2, 10, false))
	require.True(t, RolloutPolicy{FailurePercent: 20}.Tolerates(2, 10, false))
	require.False(t, RolloutPolicy{FailurePercent: 20}.Tolerates(3, 10, false))
	over := RolloutPolicy{FailurePercent: 20, WaveSize: 5}.Over(def)
	require.Nil(t, over.FailureThreshold, "a percentage replaces the default count")
	require.Zero(t, over.WavePercent)
}

func TestMinimalRequest(t *testing.T) {
	t.Parallel()
	data := fmt.Sprintf(`{"schema":"confiture.request/v1","id":"a","target":"t","direction":"down",
		"migrations":[{"version":"1","name":"x","up_sql":"SELECT 1","checksum":%q}]}`, Checksum("SELECT 1"))
	r, err := DecodeRequest([]byte(data))
	require.NoError(t, err)
	require.Equal(t, DirectionDown, r.Direction)
	require.Equal(t, "1_x", r.Migrations[0].ID())
}

func TestEventOfEveryKindValidates(t *testing.T) {
	t.Parallel()
	for _, kind := range EventKinds {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			want := fullEvent(kind)
			requireEveryFieldCovered(t, want)
			data := mustJSON(t, want)
			require.NoError(t, ValidateEvent(data))
			got, err := DecodeEvent(data)
			require.NoError(t, err)
			require.Equal(t, want, got)
		})
	}
}

func TestRunLevelEventValidates(t *testing.T) {
	t.Parallel()
	e := &Event{Schema: EventSchemaV1, ID: uuid.NewString(), Time: time.Now(), Kind: KindRunRejected, Run: RunID("", ""),
		Error: &EventError{Code: CodeUnsupportedSchema, Message: "schema is not supported"}}
	require.NoError(t, ValidateEvent(mustJSON(t, e)))
}

func TestBadEvents(t *testing.T) {
	t.Parallel()
	base := func(t *testing.T) map[string]any {
		var m map[string]any
		require.NoError(t, json.Unmarshal(mustJSON(t, fullEvent(KindHookFailed)), &m))
		return m
	}
	cases := []struct {
		name   string
		mutate func(m map[string]any)
		code   string
		msg    string
	}{
		{"wrong schema", func(m map[string]any) { m["schema"] = "confiture.event/v2" }, CodeUnsupportedSchema, `schema "confiture.event/v2" is not supported (want "confiture.event/v1")`},
		{"request schema", func(m map[string]any) { m["schema"] = RequestSchemaV1 }, CodeUnsupportedSchema, "is not supported"},
		{"unknown kind", func(m map[string]any) { m["kind"] = "run.exploded" }, CodeInvalidRequest, "/kind: value must be one of"},
		{"bad id", func(m map[string]any) { m["id"] = "not-a-uuid" }, CodeInvalidRequest, "/id: is not a valid uuid"},
		{"bad time", func(m map[string]any) { m["time"] = "yesterday" }, CodeInvalidRequest, "/time: is not a valid date-time"},
		{"missing rows", func(m map[string]any) { delete(m, "rows_affected") }, CodeInvalidRequest, `(root): missing property "rows_affected"`},
		{"negative attempt", func(m map[string]any) { m["attempt"] = -1 }, CodeInvalidRequest, "/attempt: minimum"},
		{"unknown error code", func(m map[string]any) { m["error"].(map[string]any)["code"] = "oops" }, CodeInvalidRequest, "/error/code: value must be one of"},
		{"bad sqlstate", func(m map[string]any) { m["error"].(map[string]any)["sqlstate"] = "123" }, CodeInvalidRequest, "/error/sqlstate: does not match pattern"},
		{"phase ddl is fine", func(m map[string]any) { m["phase"] = PhaseDDL }, "", ""},
		{"data not an object", func(m map[string]any) { m["data"] = []any{1} }, CodeInvalidRequest, "/data: must be object, got array"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			m := base(t)
			tc.mutate(m)
			data := mustJSON(t, m)
			err := ValidateEvent(data)
			_, decErr := DecodeEvent(data)
			if tc.code == "" {
				require.NoError(t, err)
				require.NoError(t, decErr)
				return
			}
			var de *DecodeError
			require.ErrorAs(t, err, &de)
			require.Equal(t, tc.code, de.Code, de.Message)
			require.Contains(t, de.Message, tc.msg)
			require.Equal(t, err, decErr)
		})
	}
}

// --- bad requests ----------------------------------------------------------------------------

func TestDecodeRequestRejects(t *testing.T) {
	t.Parallel()
	hooks := func(m map[string]any, i int) []any {
		return m["migrations"].([]any)[i].(map[string]any)["hooks"].([]any)
	}
	mig := func(m map[string]any, i int) map[string]any { return m["migrations"].([]any)[i].(map[string]any) }
	hook := func(m map[string]any, i, j int) map[string]any { return hooks(m, i)[j].(map[string]any) }
	cases := []struct {
		name   string
		raw    string // used instead of the mutated valid request when set
		mutate func(m map[string]any)
		code   string
		msg    string
	}{
		{name: "empty", raw: " ", code: CodeInvalidRequest, msg: "malformed JSON: empty message"},
		{name: "malformed JSON", raw: `{"schema":"confiture.request/v1",`, code: CodeInvalidRequest, msg: "malformed JSON"},
		{name: "trailing garbage", raw: `{"schema":"confiture.request/v1"} x`, code: CodeInvalidRequest, msg: "malformed JSON"},
		{name: "JSON array", raw: `[{"schema":"confiture.request/v1"}]`, code: CodeInvalidRequest, msg: "request must be a JSON object, got array"},
		{name: "JSON null", raw: `null`, code: CodeInvalidRequest, msg: "request must be a JSON object, got null"},
		{name: "missing schema", mutate: func(m map[string]any) { delete(m, "schema") }, code: CodeUnsupportedSchema, msg: `missing "schema" field (want "confiture.request/v1")`},
		{name: "schema not a string", mutate: func(m map[string]any) { m["schema"] = 1 }, code: CodeUnsupportedSchema, msg: `"schema" field must be a string, got number`},
		{name: "wrong schema", mutate: func(m map[string]any) { m["schema"] = "confiture.request/v2" }, code: CodeUnsupportedSchema, msg: `schema "confiture.request/v2" is not supported (want "confiture.request/v1")`},
		{name: "wrong schema checked before the rest", raw: `{"schema":"confiture.request/v2","bogus":true}`, code: CodeUnsupportedSchema, msg: "is not supported"},
		{name: "unknown field", mutate: func(m map[string]any) { m["dsn"] = "postgres://admin:s3cret@db/prod" }, code: CodeInvalidRequest, msg: `(root): unknown property "dsn"`},
		{name: "unknown migration field", mutate: func(m map[string]any) { mig(m, 0)["sql"] = "x" }, code: CodeInvalidRequest, msg: `/migrations/0: unknown property "sql"`},
		{name: "missing id", mutate: func(m map[string]any) { delete(m, "id") }, code: CodeInvalidRequest, msg: `(root): missing property "id"`},
		{name: "bad id", mutate: func(m map[string]any) { m["id"] = "-starts-with-dash" }, code: CodeInvalidRequest, msg: "/id: does not match pattern"},
		{name: "bad target", mutate: func(m map[string]any) { m["target"] = "../etc" }, code: CodeInvalidRequest, msg: `/target: does not match pattern "^[A-Za-z0-9_-]{1,64}$"`},
		{name: "target is a connection string", mutate: func(m map[string]any) { m["target"] = "postgres://admin:s3cret@db/prod" }, code: CodeInvalidRequest, msg: "/target: does not match pattern"},
		{name: "bad direction", mutate: func(m map[string]any) { m["direction"] = "sideways" }, code: CodeInvalidRequest, msg: "/direction: value must be one of"},
		{name: "bad to", mutate: func(m map[string]any) { m["to"] = "latest" }, code: CodeInvalidRequest, msg: "/to: does not match pattern"},
		{name: "dry_run not a boolean", mutate: func(m map[string]any) { m["dry_run"] = "yes" }, code: CodeInvalidRequest, msg: "/dry_run: must be boolean, got string"},
		{name: "requested_by too long", mutate: func(m map[string]any) { m["requested_by"] = strings.Repeat("a", 201) }, code: CodeInvalidRequest, msg: "/requested_by: must be at most 200 characters long, got 201"},
		{name: "empty migrations", mutate: func(m map[string]any) { m["migrations"] = []any{} }, code: CodeInvalidRequest, msg: "/migrations: must have at least 1 item, got 0"},
		{name: "null migrations", mutate: func(m map[string]any) { m["migrations"] = nil }, code: CodeInvalidRequest, msg: "/migrations: must be array, got null"},
		{name: "bad version", mutate: func(m map[string]any) { mig(m, 0)["version"] = "1.a" }, code: CodeInvalidRequest, msg: `/migrations/0/version: does not match pattern "^[0-9]+(\\.[0-9]+)*$"`},
		{name: "version ending in a dot", mutate: func(m map[string]any) { mig(m, 0)["version"] = "1." }, code: CodeInvalidRequest, msg: `/migrations/0/version: does not match pattern`},
		{name: "long version", mutate: func(m map[string]any) { mig(m, 0)["version"] = strings.Repeat("1", 65) }, code: CodeInvalidRequest, msg: `/migrations/0/version: must be at most 64 characters long`},
		{name: "name with a slash", mutate: func(m map[string]any) { mig(m, 1)["name"] = "add/email" }, code: CodeInvalidRequest, msg: "/migrations/1/name: does not match pattern"},
		{name: "name with a newline", mutate: func(m map[string]any) { mig(m, 1)["name"] = "add\nemail" }, code: CodeInvalidRequest, msg: "/migrations/1/name: does not match pattern"},
		{name: "same version spelt twice", mutate: func(m map[string]any) { mig(m, 1)["version"] = "1.0" }, code: CodeInvalidRequest, msg: `have the same version "1.0" (versions compare as numbers)`},
		{name: "unknown adopt", mutate: func(m map[string]any) { m["adopt"] = "liquibase" }, code: CodeInvalidRequest, msg: "/adopt: value must be one of"},
		{name: "adopt going down", mutate: func(m map[string]any) { m["adopt"] = "goose"; m["direction"] = "down" }, code: CodeInvalidRequest, msg: `adopt takes over a tool's history before migrating up; this request goes "down"`},
		{name: "adopt_table alone", mutate: func(m map[string]any) { m["adopt_table"] = "goose_db_version" }, code: CodeInvalidRequest, msg: "adopt_table names the history table of the tool a request adopts; this request adopts none"},
		{name: "adopt_table quoted", mutate: func(m map[string]any) { m["adopt"] = "goose"; m["adopt_table"] = `"Goose"` }, code: CodeInvalidRequest, msg: "/adopt_table: does not match pattern"},
		{name: "bad name", mutate: func(m map[string]any) { mig(m, 1)["name"] = "" }, code: CodeInvalidRequest, msg: "/migrations/1/name: does not match pattern"},
		{name: "empty up_sql", mutate: func(m map[string]any) { mig(m, 0)["up_sql"] = "" }, code: CodeInvalidRequest, msg: "/migrations/0/up_sql: must not be empty"},
		{name: "bad checksum pattern", mutate: func(m map[string]any) { mig(m, 0)["checksum"] = "ABC" }, code: CodeInvalidRequest, msg: "/migrations/0/checksum: does not match pattern"},
		{name: "checksum mismatch", mutate: func(m map[string]any) { mig(m, 1)["checksum"] = Checksum("something else") }, code: CodeInvalidRequest, msg: "checksum of migration 002_add-email-lower does not match its up_sql"},
		{name: "duplicate versions", mutate: func(m map[string]any) { mig(m, 1)["version"] = "001" }, code: CodeInvalidRequest, msg: `migrations 001_create_users and 001_add-email-lower have the same version "001"`},
		{name: "phase ddl in hooks", mutate: func(m map[string]any) { hook(m, 0, 0)["phase"] = PhaseDDL }, code: CodeInvalidRequest, msg: "/migrations/0/hooks/0/phase: value must be one of"},
		{name: "unknown phase", mutate: func(m map[string]any) { hook(m, 1, 0)["phase"] = "after_party" }, code: CodeInvalidRequest, msg: "/migrations/1/hooks/0/phase: value must be one of"},
		{name: "bad hook type", mutate: func(m map[string]any) { hook(m, 1, 0)["hook"] = "Backfill" }, code: CodeInvalidRequest, msg: "/migrations/1/hooks/0/hook: does not match pattern"},
		{name: "priority out of range", mutate: func(m map[string]any) { hook(m, 1, 0)["priority"] = 1000001 }, code: CodeInvalidRequest, msg: "/migrations/1/hooks/0/priority: maximum"},
		{name: "priority not an integer", mutate: func(m map[string]any) { hook(m, 1, 0)["priority"] = 1.5 }, code: CodeInvalidRequest, msg: "/migrations/1/hooks/0/priority: must be integer, got number"},
		{name: "priority integral float", raw: strings.Replace(string(mustJSON(t, validRequest())), `"priority":1,`, `"priority":1.0,`, 1), code: CodeInvalidRequest, msg: "malformed request"},
		{name: "duplicate depends_on", mutate: func(m map[string]any) { hook(m, 1, 0)["depends_on"] = []any{"rebuild", "rebuild"} }, code: CodeInvalidRequest, msg: "/migrations/1/hooks/0/depends_on: items 0 and 1 are equal"},
		{name: "duplicate hook names", mutate: func(m map[string]any) { hook(m, 1, 1)["name"] = "backfill.email_lower" }, code: CodeInvalidRequest, msg: `migration 002_add-email-lower declares hook "backfill.email_lower" twice in phase "after_ddl"`},
		{name: "depends_on unknown name", mutate: func(m map[string]any) { hook(m, 1, 0)["depends_on"] = []any{"nope"} }, code: CodeInvalidRequest, msg: `hook "backfill.email_lower" of migration 002_add-email-lower (phase after_ddl) depends on "nope", which is not a hook of that migration and phase`},
		{name: "depends_on other phase", mutate: func(m map[string]any) { hook(m, 1, 0)["depends_on"] = []any{"notify"} }, code: CodeInvalidRequest, msg: `depends on "notify", which is not a hook of that migration and phase`},
		{name: "depends_on itself", mutate: func(m map[string]any) { hook(m, 1, 0)["depends_on"] = []any{"backfill.email_lower"} }, code: CodeInvalidRequest, msg: `hook "backfill.email_lower" of migration 002_add-email-lower (phase after_ddl) depends on itself`},
		{name: "dependency cycle", mutate: func(m map[string]any) { hook(m, 1, 1)["depends_on"] = []any{"backfill.email_lower"} }, code: CodeInvalidRequest, msg: `hooks of migration 002_add-email-lower (phase after_ddl) form a dependency cycle: "backfill.email_lower" -> "rebuild" -> "backfill.email_lower"`},
		{name: "oversized up_sql", mutate: func(m map[string]any) {
			mig(m, 0)["up_sql"] = strings.Repeat("x", 1<<20+1)
			mig(m, 0)["checksum"] = Checksum(strings.Repeat("x", 1<<20+1))
		}, code: CodeInvalidRequest, msg: "/migrations/0/up_sql: must be at most 1048576 characters long, got 1048577"},
		{name: "too many hooks", mutate: func(m map[string]any) {
			var hs []any
			for i := range 201 {
				hs = append(hs, map[string]any{"phase": "cleanup", "name": fmt.Sprintf("h%d", i), "hook": "noop"})
			}
			mig(m, 0)["hooks"] = hs
		}, code: CodeInvalidRequest, msg: "/migrations/0/hooks: must have at most 200 items, got 201"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			data := []byte(tc.raw)
			if tc.raw == "" {
				var m map[string]any
				require.NoError(t, json.Unmarshal(mustJSON(t, validRequest()), &m))
				tc.mutate(m)
				data = mustJSON(t, m)
			}
			r, err := DecodeRequest(data)
			require.Error(t, err)
			require.Nil(t, r)
			var de *DecodeError
			require.ErrorAs(t, err, &de)
			require.Equal(t, tc.code, de.Code, de.Message)
			require.Contains(t, de.Message, tc.msg)
			require.LessOrEqual(t, len(de.Message), 1024)
			require.NotContains(t, de.Message, "s3cret", "messages never echo what may be a secret")
			require.Equal(t, de.Code+": "+de.Message, err.Error())

			again, err2 := DecodeRequest(data)
			require.Nil(t, again)
			require.Equal(t, err, err2, "messages are deterministic")
		})
	}
}

func TestViolationReportIsBoundedAndSorted(t *testing.T) {
	t.Parallel()
	r := validRequest()
	var migs []Migration
	for i := range 1000 {
		migs = append(migs, Migration{Version: fmt.Sprintf("v%d", i), Name: "bad/name", UpSQL: "x", Checksum: "nope"})
	}
	r.Migrations = migs
	data := mustJSON(t, r)
	_, err := DecodeRequest(data)
	var de *DecodeError
	require.ErrorAs(t, err, &de)
	require.Equal(t, CodeInvalidRequest, de.Code)
	require.LessOrEqual(t, len(de.Message), 1024)
	require.Contains(t, de.Message, "more")
	lines := strings.Split(de.Message, "; ")
	lines = lines[:len(lines)-1] // "and N more"
	require.Len(t, lines, 8, de.Message)
	for i, l := range lines {
		require.True(t, strings.HasPrefix(l, fmt.Sprintf("/migrations/%d/", i/3)), "violations in document order: %s", de.Message)
	}
	require.True(t, sort.StringsAreSorted(lines[:3]), de.Message)
}

func TestCheckRequest(t *testing.T) {
	t.Parallel()
	require.NoError(t, CheckRequest(validRequest()))

	var de *DecodeError
	require.ErrorAs(t, CheckRequest(nil), &de)

	r := validRequest()
	r.To = "v2"
	require.ErrorAs(t, CheckRequest(r), &de)
	require.Equal(t, CodeInvalidRequest, de.Code)
	require.Contains(t, de.Message, `to "v2" is not a version`)

	r = validRequest()
	r.Migrations[0].UpSQL += "\n-- edited"
	err := CheckRequest(r)
	require.ErrorAs(t, err, &de)
	require.Equal(t, "checksum of migration 001_create_users does not match its up_sql (want the sha256 hex of up_sql)", de.Message)

	r = validRequest()
	r.Migrations[0].Hooks[0].DependsOn = []string{"check_owner"}
	r.Migrations[0].Hooks[1].DependsOn = []string{"check_empty"}
	require.ErrorAs(t, CheckRequest(r), &de)
	require.Contains(t, de.Message, `form a dependency cycle: "check_empty" -> "check_owner" -> "check_empty"`)

	// A long chain is not a cycle and does not recurse.
	r = validRequest()
	var hs []HookSpec
	for i := range 200 {
		h := HookSpec{Phase: PhaseCleanup, Name: fmt.Sprintf("h%d", i), Hook: "noop"}
		if i > 0 {
			h.DependsOn = []string{fmt.Sprintf("h%d", i-1)}
		}
		hs = append(hs, h)
	}
	r.Migrations[0].Hooks = hs
	require.NoError(t, CheckRequest(r))
	hs[0].DependsOn = []string{"h199"}
	require.ErrorAs(t, CheckRequest(r), &de)
	require.Contains(t, de.Message, "dependency cycle")
}

func TestChecksum(t *testing.T) {
	t.Parallel()
	require.Equal(t, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855", Checksum(""))
	require.Len(t, Checksum("SELECT 1"), 64)
	require.NotEqual(t, Checksum("SELECT 1"), Checksum("SELECT 2"))
}

func TestDecodeErrorIsAnError(t *testing.T) {
	t.Parallel()
	_, err := DecodeRequest([]byte(`{}`))
	var de *DecodeError
	require.True(t, errors.As(err, &de))
	require.Equal(t, CodeUnsupportedSchema, de.Code)
}

// --- run ids ---------------------------------------------------------------------------------

func TestRunID(t *testing.T) {
	t.Parallel()
	a := RunID("default", "deploy-42")
	require.Equal(t, a, RunID("default", "deploy-42"), "deterministic")
	require.NotEqual(t, a, RunID("analytics", "deploy-42"), "differs by target")
	require.NotEqual(t, a, RunID("default", "deploy-43"), "differs by request id")
	require.NotEqual(t, RunID("ab", "c"), RunID("a", "bc"), "target and id do not run together")
	u, err := uuid.Parse(a)
	require.NoError(t, err)
	require.Equal(t, uuid.Version(5), u.Version())
	require.Equal(t, a, u.String())
}

// --- fuzzing ---------------------------------------------------------------------------------

func FuzzDecodeRequest(f *testing.F) {
	valid, err := json.Marshal(validRequest())
	require.NoError(f, err)
	f.Add(valid)
	f.Add([]byte(``))
	f.Add([]byte(`null`))
	f.Add([]byte(`[]`))
	f.Add([]byte(`{"schema":"confiture.request/v2"}`))
	f.Add([]byte(`{"schema":"confiture.request/v1","id":"a","target":"t","direction":"up","migrations":[{}]}`))
	f.Add([]byte(`{"schema":"confiture.request/v1","id":"a","target":"t","direction":"up","migrations":[{"version":"1","name":"x","up_sql":"x","checksum":"2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881","hooks":[{"phase":"cleanup","name":"a","hook":"noop","depends_on":["a"],"priority":1e300}]}]}`))
	f.Add([]byte(`{"schema":"confiture.request/v1","schema":"x"}`))
	f.Add([]byte("{\"schema\":\"confiture.request/v1\",\"id\":\"\xff\"}"))
	// More seeds, real requests among them, are in testdata/fuzz/FuzzDecodeRequest.
	f.Fuzz(func(t *testing.T, data []byte) {
		r, body, err := DecodeRequestBody(data)
		if err == nil {
			require.NotNil(t, r)
			// What a request decodes to is bounded by its size: re-encoded, it is at most 6
			// times longer (encoding/json writes '<' as \u003c), and so is its body.
			again, err := json.Marshal(r)
			require.NoError(t, err)
			require.LessOrEqual(t, len(again), 6*len(data)+512)
			require.LessOrEqual(t, len(body), 6*len(data))
			require.NoError(t, CheckRequest(r))
			_, err = SigningInput(data)
			require.NoError(t, err, "a valid request always has a canonical form")
			return
		}
		require.Nil(t, r)
		var de *DecodeError
		require.ErrorAs(t, err, &de)
		require.LessOrEqual(t, len(de.Message), 1024)
	})
}

func TestRequestMsgID(t *testing.T) {
	t.Parallel()
	require.Equal(t, "app:deploy-42", RequestMsgID("app", "deploy-42"))
	require.NotEqual(t, RequestMsgID("a", "deploy-42"), RequestMsgID("b", "deploy-42"), "differs by target")
	require.NotEqual(t, RequestMsgID("ab", "c"), RequestMsgID("a", "bc"), "target and id do not run together")
	for _, id := range []string{"deploy-42", "env:prod:42", "app:x"} {
		require.Equal(t, id, RequestIDOfMsgID("app", RequestMsgID("app", id)), "round trip of %q", id)
	}
	// A bare request id, as clients before RequestMsgID sent it.
	require.Equal(t, "deploy-42", RequestIDOfMsgID("app", "deploy-42"))
	require.Equal(t, "staging:42", RequestIDOfMsgID("app", "staging:42"), "another target's prefix is part of the id")
	require.Equal(t, "", RequestIDOfMsgID("app", ""))
}

// The request schema, the subjects and the worker's configuration take one pattern of target
// names.
func TestTargetNamePatternIsTheSchemas(t *testing.T) {
	t.Parallel()
	raw, err := schemas.FS.ReadFile("request.v1.json")
	require.NoError(t, err)
	var doc struct {
		Properties struct {
			Target struct {
				Pattern string `json:"pattern"`
			} `json:"target"`
		} `json:"properties"`
	}
	require.NoError(t, json.Unmarshal(raw, &doc))
	require.Equal(t, TargetNamePattern, doc.Properties.Target.Pattern)
	for name, ok := range map[string]bool{"default": true, "tenant_42-eu": true, "": false, "a.b": false, "a b": false} {
		require.Equal(t, ok, ValidTargetName(name), name)
	}
}
