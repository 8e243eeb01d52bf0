package worker

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/builtin"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/targetgroup"
	"github.com/confiture-io/confiture-worker/internal/testdb"
)

// natsCluster is a NATS cluster of in-process servers with JetStream, routed to each other, as
// docker-compose.yml runs one.
type natsCluster struct {
	servers []*server.Server
	urls    []string
}

func startNATSCluster(t *testing.T, n int) *natsCluster {
	t.Helper()
	routePorts := make([]int, n)
	var routes []string
	for i := range n {
		routePorts[i] = freePort(t)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i]))
	}
	c := &natsCluster{}
	for i := range n {
		opts := &server.Options{
			ServerName: fmt.Sprintf("n%d", i+1), Host: "127.0.0.1", Port: -1, JetStream: true,
			StoreDir: t.TempDir(), NoSigs: true, NoLog: true, MaxPayload: 8 << 20,
			Cluster: server.ClusterOpts{Name: "confiture", Host: "127.0.0.1", Port: routePorts[i]},
			Routes:  server.RoutesFromStr(strings.Join(routes, ",")),
		}
		s, err := server.NewServer(opts)
		require.NoError(t, err)
		go s.Start()
		c.servers = append(c.servers, s)
	}
	for _, s := range c.servers {
		require.True(t, s.ReadyForConnections(30*time.Second))
		c.urls = append(c.urls, s.ClientURL())
		t.Cleanup(func() { s.Shutdown(); s.WaitForShutdown() })
	}
	// JetStream is ready once the cluster has elected its meta leader.
	require.Eventually(t, func() bool {
		for _, s := range c.servers {
			if s.JetStreamIsLeader() {
				return true
			}
		}
		return false
	}, 60*time.Second, 50*time.Millisecond, "no JetStream meta leader")
	return c
}

func (c *natsCluster) url() string { return strings.Join(c.urls, ",") }

// TestNATSClusterLosesANode runs a rollout over a group of six schema targets with two workers
// connected to a three-node NATS cluster whose streams have three replicas, and stops one node
// in the middle of its second wave: the rollout and every run complete, and every event
// recorded in the outbox (the runs' and the rollout's) reaches the event stream exactly once.
func TestNATSClusterLosesANode(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a three-node NATS cluster and two workers")
	}
	t.Parallel()
	cluster := startNATSCluster(t, 3)
	dsn := testdb.New(t)
	ctx := context.Background()
	db, err := pgxpool.New(ctx, dsn)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	var targets []target.Config
	for i := 1; i <= 6; i++ {
		s := fmt.Sprintf("tenant_%d", i)
		_, err := db.Exec(ctx, "CREATE SCHEMA "+s)
		require.NoError(t, err)
		targets = append(targets, target.Config{Name: "tenants-" + s, Schema: s})
	}
	groups := []targetgroup.Config{{Name: "tenants", Schemas: &targetgroup.Schemas{Target: "default", Match: "tenant_*"}}}
	reg := hooks.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	startWorker := func() {
		w, err := New(Config{
			DatabaseURL: dsn, NATSURL: cluster.url(), StreamReplicas: 3, TargetGroups: groups,
			DataDir: t.TempDir(), MaxAttempts: 3, RetryBackoff: 10 * time.Millisecond, RetryBackoffMax: 200 * time.Millisecond,
			ShutdownTimeout: 5 * time.Second, Concurrency: 4, HTTPAddr: "off", Registry: reg, Logger: testLogger(t),
		})
		require.NoError(t, err)
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		require.NoError(t, w.Start(sctx))
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			require.NoError(t, w.Stop(ctx))
		})
	}
	startWorker()
	startWorker()

	c, err := client.Connect(cluster.url())
	require.NoError(t, err)
	t.Cleanup(c.Close)
	// Each run: eight migrations, each with an after_ddl phase of 200 ms, so the runs span the
	// loss of the node.
	var migs []contract.Migration
	for i := 1; i <= 8; i++ {
		v := fmt.Sprintf("%03d", i)
		up := `INSERT INTO effects VALUES ('` + v + `')`
		if i == 1 {
			up = `CREATE TABLE effects (what text NOT NULL); ` + up
		}
		migs = append(migs, mig(v, "step", up, "", sqlHook(contract.PhaseAfterDDL, "slow", `SELECT pg_sleep(0.2)`)))
	}
	one := 1
	req := groupRequest("tenants", &contract.RolloutPolicy{Canary: &one, WaveSize: 5, MaxConcurrent: 5}, migs...)
	pub, err := c.Publish(ctx, req)
	require.NoError(t, err)
	rollout := pub.Run
	runs := map[string]string{}
	for _, tc := range targets {
		runs[tc.Name] = contract.RunID(tc.Name, req.ID)
	}
	// Once the canary is done and every run of the second wave has applied something, stop a
	// node.
	require.Eventually(t, func() bool {
		for _, tc := range targets {
			var n int
			if db.QueryRow(ctx, `SELECT count(*) FROM `+tc.Schema+`.effects`).Scan(&n) != nil || n == 0 {
				return false
			}
		}
		return true
	}, 2*time.Minute, 20*time.Millisecond)
	lost := cluster.servers[1]
	lost.Shutdown()
	lost.WaitForShutdown()
	t.Logf("stopped NATS node %s", lost.Name())

	// Every run completes in the queue database (the workers go on through the failover)...
	require.Eventually(t, func() bool {
		var open int
		return db.QueryRow(ctx, `SELECT count(*) FROM confiture_queue.runs WHERE status <> 'completed'`).Scan(&open) == nil && open == 0
	}, 2*time.Minute, 50*time.Millisecond, "runs not completed: %v",
		queryStrings(t, db, `SELECT target || ' ' || status FROM confiture_queue.runs WHERE status <> 'completed'`))
	// ... and a client of the surviving nodes sees each run's events to its end.
	survivor := cluster.urls[0]
	c2, err := client.Connect(survivor + "," + cluster.urls[2])
	require.NoError(t, err)
	t.Cleanup(c2.Close)
	for _, tc := range targets {
		evs := waitRun(t, c2, tc.Name, runs[tc.Name])
		require.Equal(t, contract.KindRunCompleted, last(evs).Kind, "%s: %v", tc.Name, kinds(evs))
		var n int
		require.NoError(t, db.QueryRow(ctx, `SELECT count(*) FROM `+tc.Schema+`.effects`).Scan(&n))
		require.Equal(t, 8, n, "%s: each migration once", tc.Name)
	}
	wctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	final, err := c2.WaitRollout(wctx, "tenants", rollout, nil)
	require.NoError(t, err)
	require.Equal(t, contract.KindRolloutCompleted, final.Kind)
	runs["tenants"] = rollout
	// Every recorded event reached the stream, once (de-duplicated by its id across the failover).
	require.Eventually(t, func() bool {
		var waiting int
		return db.QueryRow(ctx, `SELECT count(*) FROM confiture_queue.outbox WHERE published_at IS NULL`).Scan(&waiting) == nil && waiting == 0
	}, time.Minute, 50*time.Millisecond, "events still waiting in the outbox")
	for name, run := range runs {
		subject := "confiture.events." + name + "." + run
		recorded := queryStrings(t, db, `SELECT id::text FROM confiture_queue.outbox WHERE subject LIKE $1`, subject+".%")
		require.NotEmpty(t, recorded)
		// Read again while the cluster is still moving a consumer's leader after the loss.
		var ids []string
		require.Eventually(t, func() bool {
			var err error
			ids, err = readStreamEventIDs(survivor, subject+".>")
			return err == nil
		}, time.Minute, 100*time.Millisecond, "%s: the event stream cannot be read", name)
		stored := map[string]int{}
		for _, id := range ids {
			stored[id]++
		}
		require.Len(t, stored, len(recorded), "%s: events in the stream", name)
		for _, id := range recorded {
			require.Equal(t, 1, stored[id], "%s: event %s", name, id)
		}
	}
}
