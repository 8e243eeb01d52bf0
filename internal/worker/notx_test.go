package worker

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// A no_transaction migration (goose's NO TRANSACTION, dbmate's transaction:false, Flyway's
// executeInTransaction=false) means there what it means in those tools: its statements do not
// share a transaction. A value added to an enum can be used by the next statement, what a
// failed statement leaves behind stays, and a retry goes on from the failed statement without
// running the ones before it again.
func TestNoTransactionMigrationsCommitStatementByStatement(t *testing.T) {
	t.Parallel()
	b := setup(t)
	ctx := context.Background()
	_, err := b.db.Exec(ctx, `CREATE SEQUENCE attempts`)
	require.NoError(t, err)

	enum := "CREATE TYPE mood AS ENUM ('sad');\nALTER TYPE mood ADD VALUE 'happy';\nCREATE TABLE moods (m mood NOT NULL DEFAULT 'happy');\nINSERT INTO moods VALUES (DEFAULT);\n"
	// In one transaction, PostgreSQL refuses the new value: the run fails and leaves nothing.
	evs := b.run(t, request("up", mig("001", "moods", enum, "")))
	require.Equal(t, contract.KindRunFailed, last(evs).Kind, "events: %v", kinds(evs))
	require.Contains(t, last(evs).Error.Message, `unsafe use of new value "happy"`)
	require.Zero(t, b.count(t, `SELECT count(*) FROM pg_type WHERE typname = 'mood'`))

	// No transaction: it works, as it does with goose.
	m1 := mig("001", "moods", enum, "")
	m1.NoTransaction = true
	// The third statement fails on the first two attempts, with an error that may pass (a
	// serialization failure; a sequence counts the attempts, whatever rolls back); the second
	// statement must run once.
	m2 := mig("002", "retried", "CREATE TABLE once (id int);\nINSERT INTO once VALUES (1);\n"+
		"DO $$ BEGIN IF nextval('attempts') < 3 THEN RAISE EXCEPTION 'not yet' USING ERRCODE = '40001'; END IF; END $$;\n", "")
	m2.NoTransaction = true
	evs = b.run(t, request("up", m1, m2))
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "events: %v", kinds(evs))
	require.Equal(t, []string{"happy"}, b.queryStrings(t, `SELECT m::text FROM moods`))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM once`), "a retry goes on from the failed statement")
	require.Equal(t, 3, b.count(t, `SELECT last_value FROM attempts`))

	// A failure leaves the statements before it applied, and the run failed.
	m3 := mig("003", "half", "CREATE TABLE half (id int);\nSELECT 1/0;\n", "")
	m3.NoTransaction = true
	evs = b.run(t, request("up", m1, m2, m3))
	require.Equal(t, contract.KindRunFailed, last(evs).Kind, "events: %v", kinds(evs))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM pg_tables WHERE tablename = 'half'`))
	require.Equal(t, []string{"001", "002"}, b.queryStrings(t, `SELECT version FROM confiture.schema_migrations WHERE complete ORDER BY version`))
}
