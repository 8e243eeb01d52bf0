package sqlscript

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestUnwrapDropsTheTransactionAroundAWholeScript(t *testing.T) {
	t.Parallel()
	for _, script := range []string{
		"BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\n",
		"begin transaction;\nCREATE TABLE a (id int);\nend;",
		"START TRANSACTION;\nCREATE TABLE a (id int);\ncommit work; -- done\n",
		"-- wrapped\nBEGIN WORK;\nCREATE TABLE a (id int);\nCOMMIT TRANSACTION;",
	} {
		stmts, err := Split(script)
		require.NoError(t, err)
		inner, wrapped := Unwrap(stmts)
		require.True(t, wrapped, script)
		require.Len(t, inner, 1, script)
		require.Equal(t, "CREATE TABLE a (id int)", inner[0].SQL)
	}
	for _, script := range []string{
		"CREATE TABLE a (id int);",
		"BEGIN;\nCREATE TABLE a (id int);",                                       // no COMMIT
		"BEGIN ISOLATION LEVEL SERIALIZABLE;\nCREATE TABLE a (id int);\nCOMMIT;", // not plain
		"BEGIN;\nCREATE TABLE a (id int);\nROLLBACK;",
		"BEGIN;\nCREATE TABLE a (id int);\nCOMMIT;\nCREATE TABLE b (id int);", // COMMIT is not the end
		"BEGIN;\nCOMMIT;\nBEGIN;\nCOMMIT;",
		"COMMIT;\nBEGIN;",
	} {
		stmts, err := Split(script)
		require.NoError(t, err)
		inner, wrapped := Unwrap(stmts)
		require.False(t, wrapped, script)
		require.Equal(t, stmts, inner)
	}
	// BEGIN ATOMIC is not transaction control.
	stmts, err := Split("CREATE FUNCTION f() RETURNS int LANGUAGE sql BEGIN ATOMIC SELECT 1; END;")
	require.NoError(t, err)
	_, wrapped := Unwrap(stmts)
	require.False(t, wrapped)
}
