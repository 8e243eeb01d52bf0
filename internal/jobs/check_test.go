package jobs

import (
	"errors"
	"testing"

	"github.com/riverqueue/river"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/target"
)

const (
	checkDSN      = "postgres://confiture:secretpw@127.0.0.1:1/db"
	checkPassword = "secretpw"
)

// newCheckPipeline returns a Pipeline whose Check can run without any database.
func newCheckPipeline(t *testing.T) *Pipeline {
	t.Helper()
	targets, err := target.NewSet([]target.Config{{Name: "default", DSN: checkDSN}})
	require.NoError(t, err)
	t.Cleanup(targets.Close)
	reg := hooks.NewRegistry()
	require.NoError(t, hooks.RegisterBuiltins(reg))
	p, err := New(&Config{
		Store:    runstore.NewStore(nil, runstore.DefaultSchema),
		Targets:  targets,
		Registry: reg,
	}, river.NewWorkers())
	require.NoError(t, err)
	return p
}

// validRequest is a request that passes Check.
func validRequest() *contract.Request {
	return &contract.Request{
		Schema: contract.RequestSchemaV1, ID: "req-1", Target: "default", Direction: contract.DirectionUp,
		Migrations: []contract.Migration{
			{
				Version: "001", Name: "users",
				UpSQL:    "CREATE TABLE users (id int);\nCREATE INDEX CONCURRENTLY users_id ON users (id);",
				DownSQL:  "DROP TABLE users;",
				Checksum: contract.Checksum("CREATE TABLE users (id int);\nCREATE INDEX CONCURRENTLY users_id ON users (id);"),
				Hooks: []contract.HookSpec{
					{Phase: contract.PhaseBeforeValidation, Name: "pg15", Hook: "assert", Params: map[string]any{"sql": "SELECT current_setting('server_version_num')::int >= 150000"}},
					{Phase: contract.PhaseAfterDDL, Name: "seed", Hook: "sql", Params: map[string]any{"sql": "INSERT INTO users VALUES (1)"}},
					{Phase: contract.PhaseAfterValidation, Name: "seeded", Hook: "assert", Params: map[string]any{"sql": "SELECT count(*) = 1 FROM users"}},
					{Phase: contract.PhaseOnError, Name: "notify", Hook: "sql", Params: map[string]any{"sql": "SELECT 1"}},
				},
			},
			{Version: "002", Name: "empty", UpSQL: "-- nothing yet", Checksum: contract.Checksum("-- nothing yet")},
		},
	}
}

// checkErr runs Check on req, which must fail, and returns the *contract.DecodeError.
func checkErr(t *testing.T, p *Pipeline, req *contract.Request) *contract.DecodeError {
	t.Helper()
	err := p.Check(req)
	require.Error(t, err)
	var de *contract.DecodeError
	require.True(t, errors.As(err, &de), "error is %T, want *contract.DecodeError", err)
	require.NotContains(t, de.Message, checkPassword)
	require.NotContains(t, de.Message, "127.0.0.1:1")
	require.NotContains(t, err.Error(), checkPassword)
	return de
}

func TestCheckAcceptsValidRequest(t *testing.T) {
	t.Parallel()
	p := newCheckPipeline(t)
	require.NoError(t, p.Check(validRequest()))

	down := validRequest()
	down.Direction = contract.DirectionDown
	require.NoError(t, p.Check(down))
}

func TestCheckUnknownTarget(t *testing.T) {
	t.Parallel()
	p := newCheckPipeline(t)
	req := validRequest()
	req.Target = "production"
	de := checkErr(t, p, req)
	require.Equal(t, contract.CodeUnknownTarget, de.Code)
	require.Contains(t, de.Message, `"production"`)
	require.Contains(t, de.Message, "default", "the message lists the configured targets by name")
}

func TestCheckUnknownHook(t *testing.T) {
	t.Parallel()
	p := newCheckPipeline(t)
	req := validRequest()
	req.Migrations[0].Hooks = append(req.Migrations[0].Hooks,
		contract.HookSpec{Phase: contract.PhaseCleanup, Name: "tidy", Hook: "vacuum-analyze"})
	de := checkErr(t, p, req)
	require.Equal(t, contract.CodeUnknownHook, de.Code)
	require.Contains(t, de.Message, "001_users")
	require.Contains(t, de.Message, `"vacuum-analyze"`)
}

func TestCheckInvalidHooks(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		hook contract.HookSpec
		want string
	}{
		{"bad params", contract.HookSpec{Phase: contract.PhaseAfterDDL, Name: "typo", Hook: "sql", Params: map[string]any{"sqll": "SELECT 1"}}, "sqll"},
		{"transaction control in a hook", contract.HookSpec{Phase: contract.PhaseAfterDDL, Name: "commits", Hook: "sql", Params: map[string]any{"sql": "COMMIT"}}, "COMMIT"},
		{"hook in the ddl phase", contract.HookSpec{Phase: contract.PhaseDDL, Name: "in-ddl", Hook: "sql", Params: map[string]any{"sql": "SELECT 1"}}, "not a hook phase"},
		{"unknown dependency", contract.HookSpec{Phase: contract.PhaseAfterDDL, Name: "late", Hook: "sql", Params: map[string]any{"sql": "SELECT 1"}, DependsOn: []string{"ghost"}}, `"ghost"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			p := newCheckPipeline(t)
			req := validRequest()
			req.Migrations[0].Hooks = append(req.Migrations[0].Hooks, tt.hook)
			de := checkErr(t, p, req)
			require.Equal(t, contract.CodeInvalidHooks, de.Code)
			require.Contains(t, de.Message, "001_users")
			require.Contains(t, de.Message, tt.want)
			require.NotContains(t, de.Message, "\n", "one line")
		})
	}
}

func TestCheckInvalidSQL(t *testing.T) {
	t.Parallel()
	p := newCheckPipeline(t)

	req := validRequest()
	req.Migrations[1].UpSQL = "CREATE TABLE t (id int);\nCOMMIT;"
	de := checkErr(t, p, req)
	require.Equal(t, contract.CodeInvalidSQL, de.Code)
	require.Contains(t, de.Message, "002_empty (up SQL)")
	require.Contains(t, de.Message, "line 2")
	require.Contains(t, de.Message, "COMMIT")

	req = validRequest()
	req.Migrations[0].DownSQL = "BEGIN;\nDROP TABLE users;"
	de = checkErr(t, p, req)
	require.Equal(t, contract.CodeInvalidSQL, de.Code)
	require.Contains(t, de.Message, "001_users (down SQL)")
	require.Contains(t, de.Message, "line 1")

	req = validRequest()
	req.Migrations[0].UpSQL = "SELECT 'unterminated"
	de = checkErr(t, p, req)
	require.Equal(t, contract.CodeInvalidSQL, de.Code)
	require.Contains(t, de.Message, "unterminated")
}

func TestCheckReportsEveryProblem(t *testing.T) {
	t.Parallel()
	p := newCheckPipeline(t)
	req := validRequest()
	req.Migrations[0].UpSQL = "ROLLBACK"
	req.Migrations[1].Hooks = []contract.HookSpec{{Phase: contract.PhaseCleanup, Name: "x", Hook: "nope"}}
	de := checkErr(t, p, req)
	require.Equal(t, contract.CodeInvalidSQL, de.Code, "the code of the first problem")
	require.Contains(t, de.Message, "001_users (up SQL)")
	require.Contains(t, de.Message, "002_empty")
	require.Contains(t, de.Message, `"nope"`)
}

func TestCheckAcceptsDryRunAndStillChecksIt(t *testing.T) {
	t.Parallel()
	p := newCheckPipeline(t)
	req := validRequest()
	req.DryRun = true
	require.NoError(t, p.Check(req))
	req.Migrations[0].Hooks = append(req.Migrations[0].Hooks, contract.HookSpec{Phase: "after_ddl", Name: "x", Hook: "no_such_hook"})
	de := checkErr(t, p, req)
	require.Equal(t, contract.CodeUnknownHook, de.Code)
}

func TestNewRequiresStoreTargetsRegistry(t *testing.T) {
	t.Parallel()
	_, err := New(&Config{}, river.NewWorkers())
	require.ErrorContains(t, err, "required")
}
