package api_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/micro"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/testdb"
	"github.com/confiture-io/confiture-worker/internal/worker"
)

func startWorker(t *testing.T) *worker.Worker {
	t.Helper()
	w, err := worker.New(worker.Config{DatabaseURL: testdb.New(t), DataDir: t.TempDir(), EmbeddedNATSPort: -1, HTTPAddr: "off",
		Logger: slog.New(slog.DiscardHandler), FetchCooldown: time.Millisecond, MaxAttempts: 1})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	require.NoError(t, w.Start(ctx))
	t.Cleanup(func() { require.NoError(t, w.Stop(context.Background())) })
	return w
}

func request(id string, ms ...contract.Migration) *contract.Request {
	return &contract.Request{Schema: contract.RequestSchemaV1, ID: id, Target: "default", Direction: contract.DirectionUp, Migrations: ms}
}

func migration(version, up string, hooks ...contract.HookSpec) contract.Migration {
	return contract.Migration{Version: version, Name: "m" + version, UpSQL: up, Checksum: contract.Checksum(up), Hooks: hooks}
}

func apiCode(t *testing.T, err error) string {
	t.Helper()
	var ae *client.APIError
	require.True(t, errors.As(err, &ae), "want an API refusal, got %v", err)
	return ae.Code
}

// The service API against a real worker (embedded NATS, a database of its own): status, runs,
// one run's events and the operator actions, with each reply valid against schemas/api.v1.json
// (the client validates them) and each bad request refused with the reason.
func TestServiceAPI(t *testing.T) {
	t.Parallel()
	w := startWorker(t)
	c, err := client.Connect(w.NATSURL())
	require.NoError(t, err)
	t.Cleanup(c.Close)
	ctx := t.Context()

	st, err := c.Status(ctx, "default")
	require.NoError(t, err)
	require.Empty(t, st.Migrations, "a target no run has touched")

	ok := request("ok", migration("001", "CREATE TABLE api_t (id int)"),
		migration("002", "ALTER TABLE api_t ADD COLUMN name text",
			contract.HookSpec{Phase: contract.PhaseAfterDDL, Name: "fill", Hook: "sql", Params: map[string]any{"sql": "SELECT 1"}}))
	pub, err := c.Publish(ctx, ok)
	require.NoError(t, err)
	final, err := c.Wait(ctx, "default", pub.Run, nil)
	require.NoError(t, err)
	require.Equal(t, contract.KindRunCompleted, final.Kind)
	bad := request("bad", migration("003", "ALTER TABLE nowhere ADD COLUMN x int"))
	pub2, err := c.Publish(ctx, bad)
	require.NoError(t, err)
	final, err = c.Wait(ctx, "default", pub2.Run, nil)
	require.NoError(t, err)
	require.Equal(t, contract.KindRunFailed, final.Kind)

	st, err = c.Status(ctx, "default")
	require.NoError(t, err)
	require.Len(t, st.Migrations, 2)
	require.Equal(t, "001", st.Migrations[0].Version)
	require.Equal(t, contract.MigrationApplied, st.Migrations[1].State)
	require.Equal(t, contract.Checksum("ALTER TABLE api_t ADD COLUMN name text"), st.Migrations[1].Checksum)
	require.Equal(t, pub.Run, st.Migrations[1].Run)
	require.Equal(t, "failed", st.LastRun.Status, "the status says what the tracking table cannot: 003 failed in its DDL")
	require.Equal(t, "003", st.LastRun.FailedVersion)
	require.Equal(t, contract.PhaseDDL, st.LastRun.FailedPhase)

	runs, err := c.Runs(ctx, "default", 0)
	require.NoError(t, err)
	require.Len(t, runs.Runs, 2)
	require.Equal(t, "bad", runs.Runs[0].RequestID, "newest first")
	require.Equal(t, "failed", runs.Runs[0].Status)
	require.Equal(t, "003", runs.Runs[0].FailedVersion)
	require.Equal(t, contract.CodeSQLError, runs.Runs[0].Error.Code)
	require.Equal(t, "completed", runs.Runs[1].Status)
	require.Equal(t, 2, runs.Runs[1].Migrations)
	require.NotNil(t, runs.Runs[1].FinishedAt)
	one, err := c.Runs(ctx, "default", 1)
	require.NoError(t, err)
	require.Len(t, one.Runs, 1)

	run, err := c.Run(ctx, "default", "ok") // by request id
	require.NoError(t, err)
	require.Equal(t, pub.Run, run.Run.ID)
	require.True(t, run.EventsComplete)
	require.Equal(t, contract.KindRunAccepted, run.Events[0].Kind)
	require.Equal(t, contract.KindRunCompleted, run.Events[len(run.Events)-1].Kind)
	var hooks []string
	for _, ev := range run.Events {
		if ev.Kind == contract.KindHookCompleted {
			hooks = append(hooks, ev.Hook)
		}
	}
	require.Equal(t, []string{"fill"}, hooks)
	byID, err := c.Run(ctx, "default", pub.Run)
	require.NoError(t, err)
	require.Equal(t, run.Run.ID, byID.Run.ID)

	// Actions: the failed run is retried (it fails again, the table is still missing); a
	// completed one cannot be resumed.
	act, err := c.Act(ctx, "default", "bad", contract.ActionRetry, "the table exists now", nil)
	require.NoError(t, err)
	require.Equal(t, contract.ActionRetry, act.Action)
	require.Contains(t, []string{"queued", "running", "failed"}, act.Run.Status)
	_, err = c.Act(ctx, "default", "ok", contract.ActionResume, "", nil)
	require.Equal(t, contract.APIErrConflict, apiCode(t, err))
	require.ErrorContains(t, err, "completed")

	// Bad requests: each refused with the reason.
	_, err = c.Run(ctx, "default", "nobody")
	require.Equal(t, contract.APIErrNotFound, apiCode(t, err))
	require.ErrorContains(t, err, `no run "nobody"`)
	_, err = c.Status(ctx, "elsewhere")
	require.Equal(t, contract.APIErrNotFound, apiCode(t, err))
	require.ErrorContains(t, err, `unknown target "elsewhere"`)
	_, err = c.Run(ctx, "default", "")
	require.Equal(t, contract.APIErrBadRequest, apiCode(t, err))
	_, err = c.Act(ctx, "default", "ok", "explode", "", nil)
	require.Equal(t, contract.APIErrBadRequest, apiCode(t, err))
	require.ErrorContains(t, err, "action")
	for _, body := range []string{`{"schema":"confiture.api.request/v2"}`, `[1]`, `{"schema":"confiture.api.request/v1","limit":5000}`, `{"schema":"confiture.api.request/v1","dsn":"x"}`} {
		msg, err := c.NC.RequestWithContext(ctx, contract.APISubject(contract.APIRuns, "default"), []byte(body))
		require.NoError(t, err)
		require.Equal(t, contract.APIErrBadRequest, msg.Header.Get(micro.ErrorCodeHeader), body)
		require.NotEmpty(t, msg.Header.Get(micro.ErrorHeader), body)
	}
	// An empty body is a request without options (what `nats req` sends by default).
	msg, err := c.NC.RequestWithContext(ctx, contract.APISubject(contract.APIStatus, "default"), nil)
	require.NoError(t, err)
	require.NoError(t, contract.ValidateAPI(contract.APIStatusSchemaV1, msg.Data))
}

// The service is discoverable as a micro service, with its endpoints' subjects and metadata.
func TestServiceAPIIsDiscoverable(t *testing.T) {
	t.Parallel()
	w := startWorker(t)
	nc, err := nats.Connect(w.NATSURL())
	require.NoError(t, err)
	t.Cleanup(nc.Close)
	msg, err := nc.Request("$SRV.INFO."+contract.APIService, nil, 10*time.Second)
	require.NoError(t, err)
	var info micro.Info
	require.NoError(t, json.Unmarshal(msg.Data, &info))
	require.Equal(t, contract.APIVersion, info.Version)
	subjects := map[string]string{}
	for _, e := range info.Endpoints {
		subjects[e.Name] = e.Subject
	}
	require.Equal(t, map[string]string{
		"status": "confiture.api.status.*", "runs": "confiture.api.runs.*", "run": "confiture.api.run.*", "action": "confiture.api.action.*",
		"rollout": "confiture.api.rollout.*",
	}, subjects)
}

// An action on a target that accepts only signed requests must be signed by one of its signers,
// for that target; reading needs no signature.
func TestSignedActions(t *testing.T) {
	t.Parallel()
	pub, key, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	_, otherKey, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	pubText, err := contract.MarshalPublicKey(pub)
	require.NoError(t, err)
	dsn := testdb.New(t)
	w, err := worker.New(worker.Config{DatabaseURL: dsn, DataDir: t.TempDir(), EmbeddedNATSPort: -1, HTTPAddr: "off",
		Logger:  slog.New(slog.DiscardHandler),
		Targets: []target.Config{{Name: "secure", DSN: dsn, RequireSigned: true, Signers: []target.Signer{{ID: "ops", PublicKey: pubText}}}}})
	require.NoError(t, err)
	require.NoError(t, w.Start(t.Context()))
	t.Cleanup(func() { require.NoError(t, w.Stop(context.Background())) })
	c, err := client.Connect(w.NATSURL())
	require.NoError(t, err)
	t.Cleanup(c.Close)
	ctx := t.Context()

	_, err = c.Status(ctx, "secure")
	require.NoError(t, err, "reading needs no signature")
	_, err = c.Act(ctx, "secure", "some-run", contract.ActionFail, "", nil)
	require.Equal(t, contract.APIErrForbidden, apiCode(t, err))
	require.ErrorContains(t, err, `target "secure" accepts only signed actions`)
	_, err = c.Act(ctx, "secure", "some-run", contract.ActionFail, "", &client.Signer{Key: otherKey, KeyID: "ops"})
	require.Equal(t, contract.APIErrForbidden, apiCode(t, err))
	require.ErrorContains(t, err, "signature by key \"ops\" is not valid")
	_, err = c.Act(ctx, "secure", "some-run", contract.ActionFail, "", &client.Signer{Key: key, KeyID: "someone"})
	require.Equal(t, contract.APIErrForbidden, apiCode(t, err))

	// Signed by a signer of the target: it reaches the run lookup.
	_, err = c.Act(ctx, "secure", "some-run", contract.ActionFail, "", &client.Signer{Key: key, KeyID: "ops"})
	require.Equal(t, contract.APIErrNotFound, apiCode(t, err))

	// A signed action replayed on another target's subject, or signed too long ago.
	req := contract.APIRequest{Schema: contract.APIRequestSchemaV1, Run: "some-run", Action: contract.ActionFail, Target: "elsewhere"}
	data, err := contract.SignAPIRequest(&req, key, "ops", time.Now(), time.Time{})
	require.NoError(t, err)
	msg, err := c.NC.RequestWithContext(ctx, contract.APISubject(contract.APIAction, "secure"), data)
	require.NoError(t, err)
	require.Equal(t, contract.APIErrForbidden, msg.Header.Get(micro.ErrorCodeHeader))
	require.Contains(t, msg.Header.Get(micro.ErrorHeader), `names target "elsewhere"`)
	req = contract.APIRequest{Schema: contract.APIRequestSchemaV1, Run: "some-run", Action: contract.ActionFail, Target: "secure"}
	data, err = contract.SignAPIRequest(&req, key, "ops", time.Now().Add(-time.Hour), time.Time{})
	require.NoError(t, err)
	msg, err = c.NC.RequestWithContext(ctx, contract.APISubject(contract.APIAction, "secure"), data)
	require.NoError(t, err)
	require.Equal(t, contract.APIErrForbidden, msg.Header.Get(micro.ErrorCodeHeader))
	require.Contains(t, msg.Header.Get(micro.ErrorHeader), "signature expired")
}
