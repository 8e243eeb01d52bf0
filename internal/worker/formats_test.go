package worker

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/migrations"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/testdb"
	"github.com/confiture-io/confiture-worker/internal/toolrun"
)

// applyWithTool migrates dsn through dir with the tool itself.
func applyWithTool(t *testing.T, format, dir, dsn string) {
	t.Helper()
	out, err := toolrun.Apply(context.Background(), format, dir, dsn)
	require.NoError(t, err, "%s: %s", format, out)
}

func schemaDump(t *testing.T, dsn string) string {
	t.Helper()
	dump, err := toolrun.SchemaDump(context.Background(), dsn)
	require.NoError(t, err)
	return dump
}

// historyRows is the tool's history table, every row as text, to see that nothing changed it.
func historyRows(t *testing.T, db *pgxpool.Pool, format string) []string {
	t.Helper()
	table := map[string]string{"goose": "goose_db_version", "golang-migrate": "schema_migrations",
		"dbmate": "schema_migrations", "flyway": "flyway_schema_history"}[format]
	return queryStrings(t, db, `SELECT h::text FROM `+table+` h ORDER BY h::text`)
}

// For each tool, a directory of over twenty migrations in its own syntax (internal/toolrun's
// fixtures): applied through the worker, read in place, it gives the schema the tool gives
// (pg_dump --schema-only); a database the tool migrated is adopted, then migrated one further,
// again as the tool would; down reverts it all.
func TestEachToolsDirectoryThroughTheWorkerGivesTheToolsSchema(t *testing.T) {
	t.Parallel()
	for _, format := range toolrun.Formats {
		t.Run(format, func(t *testing.T) {
			t.Parallel()
			fresh, byTool, byToolNext, empty := testdb.New(t), testdb.New(t), testdb.New(t), testdb.New(t)
			b := setup(t, func(cfg *Config) {
				cfg.Targets = []target.Config{{Name: "default", DSN: cfg.DatabaseURL}, {Name: "fresh", DSN: fresh}, {Name: "tool", DSN: byTool}}
			})
			freshDB, toolDB := poolFor(t, fresh), poolFor(t, byTool)
			ms, got, err := migrations.LoadFormat(toolrun.Fixture(format), "")
			require.NoError(t, err)
			require.Equal(t, migrations.Format(format), got, "the format is detected")
			require.GreaterOrEqual(t, len(ms), 20)
			nextDir := toolrun.FixtureNext(t, format)
			next, _, err := migrations.LoadFormat(nextDir, migrations.Format(format))
			require.NoError(t, err)
			require.Len(t, next, len(ms)+1)

			// The same directory, through the worker and through the tool.
			req := request("up", ms...)
			req.Target = "fresh"
			evs := b.run(t, req)
			require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v; %v", kinds(evs), last(evs).Error)
			applyWithTool(t, format, toolrun.Fixture(format), byTool)
			want := schemaDump(t, byTool)
			require.Equal(t, want, schemaDump(t, fresh), "the worker's schema is the tool's")
			require.Contains(t, want, "CREATE TABLE")

			// Adopt the database the tool migrated: a dry-run first, which records nothing.
			history := historyRows(t, toolDB, format)
			adopt := request("up", next...)
			adopt.Target, adopt.Adopt, adopt.DryRun = "tool", format, true
			evs = b.run(t, adopt)
			require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v; %v", kinds(evs), last(evs).Error)
			started := ofKind(evs, contract.KindRunStarted)[0]
			require.Contains(t, started.Message, fmt.Sprintf("would adopt %d migration(s) from %s: ", len(ms), format), started.Message)
			require.Contains(t, started.Message, next[len(next)-1].Version)
			require.Zero(t, countIn(t, toolDB, `SELECT count(*) FROM pg_namespace WHERE nspname = 'confiture'`), "a dry-run records nothing")

			adopt.DryRun = false
			adopt.ID += "-real"
			evs = b.run(t, adopt)
			require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v; %v", kinds(evs), last(evs).Error)
			started = ofKind(evs, contract.KindRunStarted)[0]
			require.Contains(t, started.Message, fmt.Sprintf("applying 1 migration(s): %s; adopted %d migration(s) from %s: ", next[len(next)-1].Version, len(ms), format))
			var plan contract.RunPlan
			require.NoError(t, jsonUnmarshal(started.Data, &plan))
			require.Len(t, plan.Adopted, len(ms))
			require.True(t, strings.HasPrefix(plan.AdoptedFrom, format+": public."), plan.AdoptedFrom)
			require.Equal(t, len(ms), countIn(t, toolDB, `SELECT count(*) FROM confiture.schema_migrations WHERE applied_by LIKE 'adopted from `+format+`%'`))
			require.Equal(t, []string{next[len(next)-1].Version}, queryStrings(t, toolDB,
				`SELECT version FROM confiture.schema_migrations WHERE applied_by NOT LIKE 'adopted from %'`))
			require.Equal(t, history, historyRows(t, toolDB, format), "the tool's history is left as it was")
			applyWithTool(t, format, nextDir, byToolNext)
			require.Equal(t, schemaDump(t, byToolNext), schemaDump(t, byTool), "one migration further, as the tool would")

			// Adopting again records nothing.
			adopt.ID += "-again"
			evs = b.run(t, adopt)
			require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))
			require.Contains(t, last(evs).Message, "nothing to adopt")

			// Down, through each format's down SQL, all the way; then up again.
			for _, m := range ms {
				require.NotEmpty(t, strings.TrimSpace(m.DownSQL), "%s has a down", m.ID())
			}
			down := request("down", ms...)
			down.Target, down.To = "fresh", "0"
			evs = b.run(t, down)
			require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v; %v", kinds(evs), last(evs).Error)
			require.Equal(t, schemaDump(t, empty), schemaDump(t, fresh), "down leaves the database as it was")
			require.Zero(t, countIn(t, freshDB, `SELECT count(*) FROM confiture.schema_migrations`))
			again := request("up", ms...)
			again.Target = "fresh"
			evs = b.run(t, again)
			require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v; %v", kinds(evs), last(evs).Error)
			require.Equal(t, want, schemaDump(t, fresh))
		})
	}
}

// examples/from-goose, which docs/COMING_FROM.md dry-runs: goose and the worker give one schema,
// the hooks file named after a version runs, and the dry-run is clean.
func TestFromGooseExampleMatchesGoose(t *testing.T) {
	t.Parallel()
	dir, err := filepath.Abs(filepath.Join("..", "..", "examples", "from-goose"))
	require.NoError(t, err)
	byTool, fresh := testdb.New(t), testdb.New(t)
	b := setup(t, func(cfg *Config) {
		cfg.Targets = []target.Config{{Name: "default", DSN: fresh}}
	})
	ms, format, err := migrations.LoadFormat(dir, "")
	require.NoError(t, err)
	require.Equal(t, migrations.FormatGoose, format)
	require.Len(t, ms[1].Hooks, 2, "00002.hooks.yaml")
	require.True(t, ms[1].NoTransaction)

	dry := request("up", ms...)
	dry.DryRun = true
	evs := b.run(t, dry)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v; %v", kinds(evs), last(evs).Error)
	var rep contract.DryRunReport
	require.NoError(t, jsonUnmarshal(ofKind(evs, contract.KindDryRunReport)[0].Data, &rep))
	require.True(t, rep.Success)

	evs = b.run(t, request("up", ms...))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v; %v", kinds(evs), last(evs).Error)
	require.Equal(t, 2, countIn(t, poolFor(t, fresh), `SELECT count(*) FROM confiture.hook_ledger WHERE version = '00002' AND hook <> 'ddl' AND status = 'completed'`))
	applyWithTool(t, "goose", dir, byTool)
	require.Equal(t, schemaDump(t, byTool), schemaDump(t, fresh))
}

// A fleet that goose migrated, a schema per tenant, one of them behind: a rollout that adopts
// goose takes each member over from its own goose_db_version, then applies what it lacks.
func TestRolloutAdoptsAFleetGooseMigrated(t *testing.T) {
	t.Parallel()
	dir, err := filepath.Abs(filepath.Join("..", "..", "examples", "from-goose"))
	require.NoError(t, err)
	dsn := testdbNew(t)
	createTenants(t, dsn, 1, 2, 3)
	for id, args := range map[int][]string{1: nil, 2: nil, 3: {"up-to", "1"}} {
		out, err := toolrun.Goose(context.Background(), dir, fmt.Sprintf("%s?search_path=tenant_%d", dsn, id), args...)
		require.NoError(t, err, "%s", out)
	}
	b := setupOn(t, dsn, withTenants(nil))
	ms, _, err := migrations.LoadFormat(dir, "")
	require.NoError(t, err)
	ms = append(ms, mig("00003", "shop_notes", "ALTER TABLE shops ADD COLUMN notes text;", ""))
	req := groupRequest("tenants", nil, ms...)
	req.Adopt = contract.AdoptGoose
	pub, err := b.client.Publish(context.Background(), req)
	require.NoError(t, err)
	evs := b.waitRollout(t, "tenants", pub.Run)
	require.Equal(t, contract.KindRolloutCompleted, last(evs).Kind, kinds(evs))

	for id, adopted := range map[int][]string{1: {"00001", "00002"}, 2: {"00001", "00002"}, 3: {"00001"}} {
		tracking := fmt.Sprintf("confiture_tenant_%d.schema_migrations", id)
		require.Equal(t, adopted, b.queryStrings(t, `SELECT version FROM `+tracking+` WHERE applied_by = 'adopted from goose' ORDER BY version`), "tenant %d", id)
		require.Equal(t, 3, b.count(t, `SELECT count(*) FROM `+tracking+` WHERE complete`), "tenant %d", id)
		require.Equal(t, 1, b.count(t, fmt.Sprintf(`SELECT count(*) FROM information_schema.columns WHERE table_schema = 'tenant_%d' AND table_name = 'shops' AND column_name IN ('notes')`, id)))
		require.Equal(t, len(adopted), b.count(t, fmt.Sprintf(`SELECT count(*) FROM tenant_%d.goose_db_version WHERE version_id > 0`, id)), "goose's table is left as it was")
	}
}

// A Flyway file edited since Flyway applied it is found by the takeover, through the checksum
// Flyway recorded, and nothing is recorded; so is golang-migrate's dirty flag.
func TestAdoptionRefusesWhatTheToolWouldRefuse(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	flyway, gm := testdb.New(t), testdb.New(t)
	b := setup(t, func(cfg *Config) {
		cfg.Targets = []target.Config{{Name: "default", DSN: cfg.DatabaseURL}, {Name: "flyway", DSN: flyway}, {Name: "gm", DSN: gm}}
	})
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "V1__accounts.sql"), []byte("CREATE TABLE accounts (id int PRIMARY KEY);\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "V2__users.sql"), []byte("CREATE TABLE users (id int PRIMARY KEY);\n"), 0o600))
	applyWithTool(t, "flyway", dir, flyway)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "V1__accounts.sql"), []byte("CREATE TABLE accounts (id bigint PRIMARY KEY);\n"), 0o600))
	ms, _, err := migrations.LoadFormat(dir, "")
	require.NoError(t, err)
	req := request("up", ms...)
	req.Target, req.Adopt = "flyway", contract.AdoptFlyway
	evs := b.run(t, req)
	require.Equal(t, contract.KindRunFailed, last(evs).Kind, "events: %v", kinds(evs))
	require.Equal(t, contract.CodeAdoptMismatch, last(evs).Error.Code)
	require.Contains(t, last(evs).Error.Message, "1_accounts (V1__accounts.sql)")
	require.Contains(t, last(evs).Error.Message, "flyway repair")
	require.Zero(t, countIn(t, poolFor(t, flyway), `SELECT count(*) FROM confiture.schema_migrations`))

	// golang-migrate left dirty: its words, and nothing recorded.
	gmDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(gmDir, "1_a.up.sql"), []byte("CREATE TABLE a (id int);\n"), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(gmDir, "2_b.up.sql"), []byte("CREATE TABLE b (id int);\nSELECT 1/0;\n"), 0o600))
	out, err := toolrun.Migrate(ctx, gmDir, gm)
	require.Error(t, err, "%s", out)
	ms, _, err = migrations.LoadFormat(gmDir, "")
	require.NoError(t, err)
	req = request("up", ms...)
	req.Target, req.Adopt = "gm", contract.AdoptGolangMigrate
	evs = b.run(t, req)
	require.Equal(t, contract.KindRunFailed, last(evs).Kind, "events: %v", kinds(evs))
	require.Equal(t, contract.CodeAdoptMismatch, last(evs).Error.Code)
	require.Contains(t, last(evs).Error.Message, "Dirty database version 2. Fix and force version.")
	require.Zero(t, countIn(t, poolFor(t, gm), `SELECT count(*) FROM confiture.schema_migrations`))
}
