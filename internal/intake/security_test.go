package intake_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/riverqueue/river"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/builtin"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/intake"
	"github.com/confiture-io/confiture-worker/internal/jobs"
	"github.com/confiture-io/confiture-worker/internal/signing"
	"github.com/confiture-io/confiture-worker/internal/target"
)

// countingListener stands where a target's PostgreSQL would be: it counts the connections it
// accepts and closes them at once.
type countingListener struct {
	l        net.Listener
	accepted atomic.Int64
}

func listenCounting(t *testing.T) *countingListener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	c := &countingListener{l: l}
	go func() {
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			c.accepted.Add(1)
			_ = conn.Close()
		}
	}()
	t.Cleanup(func() { _ = l.Close() })
	return c
}

func (c *countingListener) dsn() string {
	return fmt.Sprintf("postgres://migrator:s3cret-password@%s/app?connect_timeout=2", c.l.Addr())
}

// secureSetup starts an Intake with the worker's real checker (configured targets, loaded
// hooks) and signature policy. Targets "app" (signatures required, signer "ci") and "open" (no
// signers) point at l.
func secureSetup(t *testing.T, l *countingListener, pub ed25519.PublicKey) (*bundle, *target.Set) {
	t.Helper()
	pubText, err := contract.MarshalPublicKey(pub)
	require.NoError(t, err)
	cfgs := []target.Config{
		{Name: "app", DSN: l.dsn(), RequireSigned: true, Signers: []target.Signer{{ID: "ci", PublicKey: pubText}}},
		{Name: "open", DSN: l.dsn()},
	}
	targets, err := target.NewSet(cfgs)
	require.NoError(t, err)
	t.Cleanup(targets.Close)
	policy, err := signing.NewPolicy(cfgs, 15*time.Minute)
	require.NoError(t, err)
	reg := hooks.NewRegistry()
	require.NoError(t, builtin.Register(reg))
	b := setup(t, func(in *intake.Intake) {
		pipeline, err := jobs.New(&jobs.Config{Store: in.Store, Targets: targets, Registry: reg}, river.NewWorkers())
		require.NoError(t, err)
		in.Checker = pipeline
		in.Verifier = policy
	})
	return b, targets
}

// answer publishes data and returns the event it produced.
func (b *bundle) answer(t *testing.T, subjectTarget, msgID string, data []byte) *contract.Event {
	t.Helper()
	before := b.outboxCount(t)
	b.publish(t, subjectTarget, msgID, data)
	eventually(t, func(c *assert.CollectT) { assert.Equal(c, before+1, b.outboxCount(c)) })
	evs := b.outbox(t)
	return evs[len(evs)-1].event
}

func signedRequest(t *testing.T, key ed25519.PrivateKey, keyID, id, targetName string, signedAt, expiresAt time.Time, edit ...func(*contract.Request)) []byte {
	t.Helper()
	req := validRequest(id, targetName)
	for _, e := range edit {
		e(&req)
	}
	data, err := contract.SignRequest(&req, key, keyID, signedAt, expiresAt)
	require.NoError(t, err)
	return data
}

// Every request the worker must refuse is refused with the reason, and no connection to any
// target is ever opened: the targets' PostgreSQL is a listener that counts connections.
func TestHostileRequestsAreRejectedWithoutConnectingToTheTarget(t *testing.T) {
	t.Parallel()
	l := listenCounting(t)
	pub, key, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	_, otherKey, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	b, targets := secureSetup(t, l, pub)
	now := time.Now()

	signed := signedRequest(t, key, "ci", "tampered", "app", now, time.Time{})
	tampered := bytes.Replace(signed, []byte("CREATE TABLE t (id int)"), []byte("DROP SCHEMA public CASCADE"), 1)
	tampered = bytes.Replace(tampered, []byte(contract.Checksum("CREATE TABLE t (id int)")), []byte(contract.Checksum("DROP SCHEMA public CASCADE")), 1)
	deep := map[string]any{"sql": "SELECT 1"}
	for range contract.MaxParamsDepth {
		deep = map[string]any{"x": deep}
	}
	withHook := func(name, hook string, params map[string]any) func(*contract.Request) {
		return func(r *contract.Request) {
			r.Migrations[0].Hooks = []contract.HookSpec{{Phase: contract.PhaseAfterDDL, Name: name, Hook: hook, Params: params}}
		}
	}
	unsigned := func(id, targetName string, edit ...func(*contract.Request)) []byte {
		r := validRequest(id, targetName)
		for _, e := range edit {
			e(&r)
		}
		return mustJSON(t, r)
	}
	connString := strings.Replace(string(unsigned("conn-string", "open")), `"target":"open"`, `"target":"postgres://migrator:s3cret-password@db:5432/app"`, 1)
	dsnField := strings.Replace(string(unsigned("dsn-field", "open")), `"target":"open"`, `"target":"open","dsn":"postgres://migrator:s3cret-password@db:5432/app"`, 1)

	for _, tc := range []struct {
		name, subject, id string
		data              []byte
		code, contains    string
	}{
		{"unsigned", "app", "unsigned", unsigned("unsigned", "app"), contract.CodeSignatureRequired, `target "app" accepts only signed requests`},
		{"unknown key", "app", "unknown-key", signedRequest(t, key, "someone", "unknown-key", "app", now, time.Time{}), contract.CodeInvalidSignature, `key "someone" is not one of the signers of target "app"`},
		{"wrong key", "app", "wrong-key", signedRequest(t, otherKey, "ci", "wrong-key", "app", now, time.Time{}), contract.CodeInvalidSignature, "the signature does not match the request"},
		{"tampered", "app", "tampered", tampered, contract.CodeInvalidSignature, "the request was changed after it was signed"},
		{"too old", "app", "too-old", signedRequest(t, key, "ci", "too-old", "app", now.Add(-time.Hour), time.Time{}), contract.CodeSignatureExpired, "over the signature_max_age of 15m0s"},
		{"past expires_at", "app", "past-expiry", signedRequest(t, key, "ci", "past-expiry", "app", now.Add(-2*time.Minute), now.Add(-time.Minute)), contract.CodeSignatureExpired, "(expires_at)"},
		{"from the future", "app", "future", signedRequest(t, key, "ci", "future", "app", now.Add(10*time.Minute), time.Time{}), contract.CodeSignatureExpired, "allowed for clock skew"},
		{"unknown target", "nope", "unknown-target", unsigned("unknown-target", "nope"), contract.CodeUnknownTarget, `unknown target "nope" (configured: [app open])`},
		{"unknown hook", "open", "unknown-hook", unsigned("unknown-hook", "open", withHook("x", "not_loaded", nil)), contract.CodeUnknownHook, "not_loaded"},
		{"bad hook params", "open", "bad-params", unsigned("bad-params", "open", withHook("x", "sql", map[string]any{"nope": 1})), contract.CodeInvalidHooks, "x"},
		{"params too deep", "open", "deep", unsigned("deep", "open", withHook("x", "sql", deep)), contract.CodeInvalidRequest, "(the limit of params depth)"},
		{"connection string as target", "open", "conn-string", []byte(connString), contract.CodeInvalidRequest, "/target: does not match pattern"},
		{"connection string field", "open", "dsn-field", []byte(dsnField), contract.CodeInvalidRequest, `unknown property "dsn"`},
	} {
		ev := b.answer(t, tc.subject, tc.id, tc.data)
		require.Equal(t, contract.KindRunRejected, ev.Kind, tc.name)
		require.NotNil(t, ev.Error, tc.name)
		require.Equal(t, tc.code, ev.Error.Code, "%s: %s", tc.name, ev.Error.Message)
		require.Contains(t, ev.Error.Message, tc.contains, tc.name)
		require.NotContains(t, ev.Error.Message+ev.Message, "s3cret", "%s: a connection string's secret never shows", tc.name)
	}
	b.requireSettled(t)
	require.Zero(t, b.runCount(t), "nothing was recorded")
	require.Empty(t, b.admit.snapshot(), "nothing was admitted")
	require.Zero(t, l.accepted.Load(), "no connection to a target was opened")

	// The listener does count: opening the target's pool connects to it.
	app, err := targets.Get("app")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = app.Pool(ctx)
	require.Error(t, err)
	require.NotContains(t, err.Error(), "s3cret")
	require.Positive(t, l.accepted.Load())
}

// A signed request is accepted; its copies are duplicates (the same body, even signed again
// later), and the same id with a different body is refused as such, also when validly signed.
// None of it opens a connection to the target.
func TestSignedRequestReplays(t *testing.T) {
	t.Parallel()
	l := listenCounting(t)
	pub, key, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	b, _ := secureSetup(t, l, pub)
	now := time.Now()
	run := contract.RunID("app", "deploy-1")

	first := signedRequest(t, key, "ci", "deploy-1", "app", now, now.Add(5*time.Minute))
	ev := b.answer(t, "app", "deploy-1", first)
	require.Equal(t, contract.KindRunAccepted, ev.Kind, ev.Message)
	require.Equal(t, run, ev.Run)

	// The identical message again (JetStream's de-duplication window aside: another message id).
	ev = b.answer(t, "app", "deploy-1-replayed", first)
	require.Equal(t, contract.KindRunDuplicate, ev.Kind)
	require.Nil(t, ev.Error)
	require.Contains(t, ev.Message, "nothing more to do")

	// The same request signed again later, re-encoded: the same body, a duplicate.
	var loose map[string]any
	require.NoError(t, json.Unmarshal(signedRequest(t, key, "ci", "deploy-1", "app", now.Add(time.Minute), time.Time{}), &loose))
	resigned, err := json.MarshalIndent(loose, "", "  ")
	require.NoError(t, err)
	ev = b.answer(t, "app", "deploy-1-resigned", resigned)
	require.Equal(t, contract.KindRunDuplicate, ev.Kind)
	require.Nil(t, ev.Error, ev.Message)

	// The same id with a different body, validly signed.
	other := signedRequest(t, key, "ci", "deploy-1", "app", now, time.Time{}, func(r *contract.Request) { r.Force = true })
	ev = b.answer(t, "app", "deploy-1-other", other)
	require.Equal(t, contract.KindRunDuplicate, ev.Kind, "never a run.rejected on the run in progress")
	require.Equal(t, run, ev.Run)
	require.NotNil(t, ev.Error)
	require.Equal(t, contract.CodeDuplicateRequest, ev.Error.Code)
	require.Contains(t, ev.Error.Message, "request id deploy-1 reused with a different body")

	// The same id, a different body, not signed: a copy of a recorded request, ignored with
	// the reason it would have been rejected.
	ev = b.answer(t, "app", "deploy-1-unsigned", mustJSON(t, validRequest("deploy-1", "app")))
	require.Equal(t, contract.KindRunDuplicate, ev.Kind)
	require.Contains(t, ev.Message, contract.CodeSignatureRequired)

	b.requireSettled(t)
	require.Equal(t, 1, b.runCount(t))
	var force bool
	require.NoError(t, b.pool.QueryRow(b.ctx, `SELECT (request::jsonb->>'force') IS NOT NULL FROM confiture_queue.runs`).Scan(&force))
	require.False(t, force, "the first request's run is kept as it was")
	require.Len(t, b.admit.snapshot(), 1)
	require.Zero(t, l.accepted.Load(), "no connection to the target was opened")
}
