package rowcount_test

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/confiture-io/confiture-worker"

	"example.com/custom-worker/rowcount"
)

// A hook is tested on its own with a real database: build it with New, run it in a transaction
// that the test rolls back. Set TEST_DATABASE_URL (postgres://postgres@127.0.0.1:5432/postgres,
// for one) to run these tests.
func TestRowCountAtLeast(t *testing.T) {
	url := os.Getenv("TEST_DATABASE_URL")
	if url == "" {
		t.Skip("TEST_DATABASE_URL is not set: skipping the tests that need PostgreSQL")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.Background()) //nolint:errcheck // nothing of the test is kept
	if _, err := tx.Exec(ctx, `CREATE TEMP TABLE "Items" (id int); INSERT INTO "Items" VALUES (1), (2), (3)`); err != nil {
		t.Fatal(err)
	}

	run := func(params map[string]any) confiture.Result {
		t.Helper()
		h, err := rowcount.New(params)
		if err != nil {
			t.Fatal(err)
		}
		res, err := h.Run(ctx, &confiture.Context{Tx: tx, Phase: "after_validation", Hook: "check"})
		if err != nil {
			t.Fatal(err)
		}
		return res
	}
	// The identifier is quoted: a mixed-case table name is counted as written.
	res := run(map[string]any{"table": "Items", "min": 3})
	if res.Failed || res.RowsAffected != 3 || res.Stats["Items_rows"] != int64(3) {
		t.Fatalf("3 rows, min 3: got %+v", res)
	}
	res = run(map[string]any{"table": "Items", "min": 4})
	if !res.Failed || !strings.Contains(res.Message, "fewer than the 4 required") {
		t.Fatalf("3 rows, min 4: got %+v", res)
	}
}

func TestNewRejectsBadParameters(t *testing.T) {
	for _, params := range []map[string]any{
		{"min": 1},
		{"table": "t", "min": -1},
		{"table": "a.b.c", "min": 1},
		{"table": "t", "min": 1, "mni": 2},
	} {
		if _, err := rowcount.New(params); err == nil {
			t.Errorf("New(%v): want an error", params)
		}
	}
}
