package client_test

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/testdb"
	"github.com/confiture-io/confiture-worker/internal/worker"
)

// natsURL is the NATS server of the worker TestMain starts for the examples: the URL a service
// would be configured with.
var natsURL string

// TestMain starts a worker (embedded NATS, a database of its own with the targets "accounts"
// and "billing", each a schema) for the examples, which talk to it as a service would.
func TestMain(m *testing.M) {
	flag.Parse()
	os.Exit(withWorker(m))
}

func withWorker(m *testing.M) int {
	dsn, drop, err := testdb.Create()
	if err != nil {
		log.Print(err)
		return 1
	}
	defer func() { _ = drop() }()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err == nil {
		_, err = conn.Exec(ctx, `CREATE SCHEMA accounts; CREATE SCHEMA billing`)
		_ = conn.Close(ctx)
	}
	if err != nil {
		log.Print(err)
		return 1
	}
	dataDir, err := os.MkdirTemp("", "confiture-client-example")
	if err != nil {
		log.Print(err)
		return 1
	}
	defer os.RemoveAll(dataDir)
	w, err := worker.New(worker.Config{
		DatabaseURL: dsn, DataDir: dataDir, EmbeddedNATSPort: -1, HTTPAddr: "off",
		Logger: slog.New(slog.DiscardHandler), FetchCooldown: time.Millisecond,
		Targets: []target.Config{{Name: "accounts", DSN: dsn, Schema: "accounts"}, {Name: "billing", DSN: dsn, Schema: "billing"}},
	})
	if err == nil {
		err = w.Start(ctx)
	}
	if err != nil {
		log.Print(err)
		return 1
	}
	defer func() { _ = w.Stop(context.Background()) }()
	natsURL = w.NATSURL()
	return m.Run()
}

// A service publishes a request built in code and waits for its run to end.
func Example() {
	ctx := context.Background()
	c, err := client.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	up := "CREATE TABLE accounts (id bigint PRIMARY KEY, email text NOT NULL)"
	req := &client.Request{
		Schema: client.RequestSchemaV1, ID: "deploy-2026-12-05", Target: "accounts", Direction: client.DirectionUp,
		Migrations: []client.Migration{{Version: "001", Name: "create_accounts", UpSQL: up, Checksum: client.Checksum(up),
			Hooks: []client.HookSpec{{Phase: "after_validation", Name: "table_exists", Hook: "assert",
				Params: map[string]any{"sql": "SELECT to_regclass('accounts') IS NOT NULL"}}}}},
	}
	pub, err := c.Publish(ctx, req) // stored by NATS: a worker runs it, even if none is up yet
	if err != nil {
		log.Fatal(err)
	}
	final, err := c.Wait(ctx, req.Target, pub.Run, func(ev *client.Event) {
		if ev.Kind == "hook.completed" {
			fmt.Println("hook", ev.Hook, "in", ev.Phase)
		}
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(final.Kind+":", final.Message)
	// Output:
	// hook table_exists in after_validation
	// run.completed: applied 1 migration(s)
}

// An operator reads what a target holds, through the workers' service API.
func ExampleClient_Status() {
	ctx := context.Background()
	c, err := client.Connect(natsURL)
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	ms, err := client.LoadDir("testdata/billing") // as submit reads a directory
	if err != nil {
		log.Fatal(err)
	}
	req := &client.Request{Schema: client.RequestSchemaV1, ID: "billing-1", Target: "billing", Direction: client.DirectionUp, Migrations: ms}
	pub, err := c.Publish(ctx, req)
	if err != nil {
		log.Fatal(err)
	}
	if _, err := c.Wait(ctx, req.Target, pub.Run, nil); err != nil {
		log.Fatal(err)
	}

	st, err := c.Status(ctx, "billing")
	if err != nil {
		log.Fatal(err)
	}
	for _, m := range st.Migrations {
		fmt.Println(m.Version, m.Name, m.State)
	}
	runs, err := c.Runs(ctx, "billing", 10)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(len(runs.Runs), "run:", runs.Runs[0].RequestID, runs.Runs[0].Status)
	// Output:
	// 001 create_invoices applied
	// 002 add_due_date applied
	// 1 run: billing-1 completed
}
