package jobs

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/sqlscript"
)

// segView is a segment as the test compares it: whether it runs in a transaction, and the
// lines of its statements.
type segView struct {
	InTx  bool
	Lines []int
}

func view(segs []segment) []segView {
	out := make([]segView, 0, len(segs))
	for _, s := range segs {
		v := segView{InTx: s.inTx}
		for _, st := range s.stmts {
			v.Lines = append(v.Lines, st.Line)
		}
		out = append(out, v)
	}
	return out
}

func TestSegments(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		script string
		want   []segView
	}{
		{
			name:   "transactional statements share one segment",
			script: "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\nALTER TABLE a ADD COLUMN b int;",
			want:   []segView{{true, []int{1, 2, 3}}},
		},
		{
			name: "each non-transactional statement alone, order kept",
			script: "CREATE TABLE a (id int);\n" + // 1
				"INSERT INTO a VALUES (1);\n" + // 2
				"CREATE INDEX CONCURRENTLY a_id ON a (id);\n" + // 3
				"VACUUM a;\n" + // 4
				"ALTER TABLE a ADD COLUMN b int;\n" + // 5
				"UPDATE a SET b = 1;\n" + // 6
				"DROP INDEX CONCURRENTLY a_id;", // 7
			want: []segView{
				{true, []int{1, 2}},
				{false, []int{3}},
				{false, []int{4}},
				{true, []int{5, 6}},
				{false, []int{7}},
			},
		},
		{
			name:   "starts and ends non-transactional",
			script: "VACUUM;\nSELECT 1;\nCREATE UNIQUE INDEX CONCURRENTLY u ON a (id)",
			want:   []segView{{false, []int{1}}, {true, []int{2}}, {false, []int{3}}},
		},
		{
			name:   "savepoints are transactional",
			script: "SAVEPOINT s;\nINSERT INTO a VALUES (2);\nROLLBACK TO SAVEPOINT s;\nROLLBACK TO s;\nRELEASE SAVEPOINT s;",
			want:   []segView{{true, []int{1, 2, 3, 4, 5}}},
		},
		{
			name:   "comments only",
			script: "-- nothing to revert\n/* really */;",
			want:   []segView{},
		},
		{
			name:   "empty",
			script: "",
			want:   []segView{},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			segs, err := segments(tt.script, sqlscript.DefaultServerVersionNum, false)
			require.NoError(t, err)
			require.Equal(t, tt.want, view(segs))
			for _, s := range segs {
				if !s.inTx {
					require.Len(t, s.stmts, 1)
					require.Equal(t, sqlscript.NonTransactional, s.stmts[0].Class)
					require.NotEmpty(t, s.stmts[0].Reason)
				}
			}
		})
	}
}

func TestSegmentsKeepStatementText(t *testing.T) {
	t.Parallel()
	segs, err := segments("INSERT INTO a VALUES ('x;y');\nVACUUM a", sqlscript.DefaultServerVersionNum, false)
	require.NoError(t, err)
	require.Len(t, segs, 2)
	require.Equal(t, "INSERT INTO a VALUES ('x;y')", segs[0].stmts[0].SQL)
	require.Equal(t, "VACUUM a", segs[1].stmts[0].SQL)
}

func TestSegmentsDependOnServerVersion(t *testing.T) {
	t.Parallel()
	script := "CREATE TYPE mood AS ENUM ('sad');\nALTER TYPE mood ADD VALUE 'happy';\nSELECT 1"
	segs, err := segments(script, 110000, false)
	require.NoError(t, err)
	require.Equal(t, []segView{{true, []int{1}}, {false, []int{2}}, {true, []int{3}}}, view(segs),
		"before PostgreSQL 12 ALTER TYPE ... ADD VALUE cannot run in a transaction")
	segs, err = segments(script, 150000, false)
	require.NoError(t, err)
	require.Equal(t, []segView{{true, []int{1, 2, 3}}}, view(segs))
}

func TestSegmentsOfAWrappedOrNoTransactionMigration(t *testing.T) {
	t.Parallel()
	// A BEGIN and a COMMIT around the whole script (golang-migrate's habit) are dropped.
	segs, err := segments("BEGIN;\nCREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\nCOMMIT;\n", sqlscript.DefaultServerVersionNum, false)
	require.NoError(t, err)
	require.Equal(t, []segView{{true, []int{2, 3}}}, view(segs))

	// no_transaction: each statement is a segment of its own, committed on its own.
	script := "CREATE TYPE mood AS ENUM ('sad');\nALTER TYPE mood ADD VALUE 'happy';\nCREATE INDEX CONCURRENTLY i ON a (id);\nSELECT 'happy'::mood"
	segs, err = segments(script, sqlscript.DefaultServerVersionNum, true)
	require.NoError(t, err)
	require.Equal(t, []segView{{true, []int{1}}, {true, []int{2}}, {false, []int{3}}, {true, []int{4}}}, view(segs))
}

func TestSegmentsRefuseTransactionControl(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, script, want string
	}{
		{"commit", "CREATE TABLE a (id int);\nINSERT INTO a VALUES (1);\nCOMMIT;", "line 3: COMMIT"},
		{"rollback", "SELECT 1;\nROLLBACK", "line 2: ROLLBACK"},
		{"begin", "BEGIN;\nCREATE TABLE a (id int);", "line 1: BEGIN"},
		{"start transaction", "\nSTART TRANSACTION;", "line 2: START TRANSACTION"},
		{"end", "SELECT 1;\n\n\nEND;", "line 4: END"},
		{"after a non-transactional statement", "VACUUM;\ncommit", "line 2: commit"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			segs, err := segments(tt.script, sqlscript.DefaultServerVersionNum, false)
			require.Nil(t, segs)
			require.ErrorContains(t, err, tt.want)
			require.ErrorContains(t, err, "remove transaction control")
		})
	}
}

func TestSegmentsSyntaxError(t *testing.T) {
	t.Parallel()
	segs, err := segments("SELECT 1;\nSELECT 'unterminated", sqlscript.DefaultServerVersionNum, false)
	require.Nil(t, segs)
	var se *sqlscript.SyntaxError
	require.ErrorAs(t, err, &se)
	require.Equal(t, 2, se.Line)
}
