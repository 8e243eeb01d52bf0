package schemas

import (
	"errors"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"
)

// Violations lists every leaf in document order (array indexes numerically), names what is
// wrong without echoing the value, and is bounded.
func TestViolations(t *testing.T) {
	t.Parallel()
	sch, err := CompileDoc("test:///v.json", []byte(`{
		"type": "object", "required": ["name"], "additionalProperties": false,
		"properties": {
			"name": {"type": "string", "minLength": 1},
			"items": {"type": "array", "items": {"type": "string", "pattern": "^[a-z]+$"}}
		}}`))
	require.NoError(t, err)
	items := make([]any, 12)
	for i := range items {
		items[i] = "S3CRET-" + strings.Repeat("x", i)
	}
	items[2] = "ok"
	err = sch.Validate(map[string]any{"items": items, "extra": true})
	require.Error(t, err)
	got := Violations(err, func(loc []string, _ jsonschema.ErrorKind) string {
		if len(loc) == 0 {
			return " (noted)"
		}
		return ""
	})
	require.True(t, strings.HasPrefix(got, `(root): missing property "name" (noted); (root): unknown property "extra" (noted); /items/0: does not match pattern "^[a-z]+$"; /items/1: `), got)
	require.NotContains(t, got, "S3CRET")
	require.True(t, strings.HasSuffix(got, "; and 5 more"), got)

	require.Equal(t, "not a validation error", Violations(errors.New("not a validation error"), nil))
}
