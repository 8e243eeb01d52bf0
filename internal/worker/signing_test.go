package worker

import (
	"context"
	"crypto/ed25519"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/target"
)

// signingTestKey returns a fresh key pair, the public key as the configuration takes it.
func signingTestKey(t *testing.T) (ed25519.PrivateKey, string) {
	t.Helper()
	pub, priv, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	text, err := contract.MarshalPublicKey(pub)
	require.NoError(t, err)
	return priv, text
}

func TestSignersConfiguration(t *testing.T) {
	t.Parallel()
	_, pub := signingTestKey(t)
	_, pub2 := signingTestKey(t)

	// From a file.
	path := filepath.Join(t.TempDir(), "worker.yaml")
	require.NoError(t, os.WriteFile(path, []byte(`signature_max_age: 5m
targets:
  - name: app
    dsn: postgres://u@db/app
    require_signed: true
    signers:
      - id: ci
        public_key: `+pub+`
      - id: alice@example.com
        public_key: |
          -----BEGIN PUBLIC KEY-----
          `+pub2+`
          -----END PUBLIC KEY-----
`), 0o600))
	cfg, err := LoadFile(path)
	require.NoError(t, err)
	require.Equal(t, 5*time.Minute, cfg.SignatureMaxAge)
	require.True(t, cfg.Targets[0].RequireSigned)
	require.Len(t, cfg.Targets[0].Signers, 2)
	w, err := New(cfg)
	require.NoError(t, err)
	require.True(t, w.signing.Requires("app"))
	require.Equal(t, 5*time.Minute, w.signing.MaxAge())

	// From the environment: CONFITURE_SIGNERS_<NAME> sets the signers of a target configured
	// anywhere (here by CONFITURE_TARGET_<NAME>, and by a flag after the environment) and
	// requires signatures on it.
	cfg = Config{}
	env := map[string]string{"CONFITURE_SIGNATURE_MAX_AGE": "90s"}
	require.NoError(t, ApplyEnv(&cfg, func(k string) string { return env[k] }, []string{
		"CONFITURE_TARGET_ORDERS=postgres://u@db/orders",
		"CONFITURE_SIGNERS_ORDERS=ci=" + pub + ", alice@example.com=" + pub2,
		"CONFITURE_SIGNERS_LATER=ci=" + pub,
	}))
	require.NoError(t, SetTarget(&cfg, "later", "postgres://u@db/later")) // --target later=...
	cfg = cfg.WithDefaults()
	require.NoError(t, cfg.Validate())
	require.Equal(t, 90*time.Second, cfg.SignatureMaxAge)
	require.Equal(t, []target.Config{
		{Name: "orders", DSN: "postgres://u@db/orders", RequireSigned: true, Signers: []target.Signer{{ID: "ci", PublicKey: pub}, {ID: "alice@example.com", PublicKey: pub2}}},
		{Name: "later", DSN: "postgres://u@db/later", RequireSigned: true, Signers: []target.Signer{{ID: "ci", PublicKey: pub}}},
	}, cfg.Targets)

	// Mistakes name the variable or the target.
	cfg = Config{}
	require.NoError(t, ApplyEnv(&cfg, func(string) string { return "" }, []string{"CONFITURE_SIGNERS_GHOST=ci=" + pub}))
	require.EqualError(t, cfg.WithDefaults().Validate(), `CONFITURE_SIGNERS_GHOST: no target "ghost" is configured`)
	require.ErrorContains(t, ApplyEnv(&Config{}, func(string) string { return "" }, []string{"CONFITURE_SIGNERS_APP=" + pub}), "CONFITURE_SIGNERS_APP: want <key id>=<public key>")
	require.ErrorContains(t, ApplyEnv(&Config{}, func(k string) string {
		return map[string]string{"CONFITURE_SIGNATURE_MAX_AGE": "soon"}[k]
	}, nil), "CONFITURE_SIGNATURE_MAX_AGE")
	_, err = New(Config{Targets: []target.Config{{Name: "app", DSN: "postgres://u@db/app", RequireSigned: true}}})
	require.ErrorContains(t, err, `target "app": require_signed is set but signers is empty`)
	_, err = New(Config{Targets: []target.Config{{Name: "app", DSN: "postgres://u@db/app", Signers: []target.Signer{{ID: "ci", PublicKey: "garbage"}}}}})
	require.ErrorContains(t, err, `target "app": signer "ci": public_key`)
	require.ErrorContains(t, Config{SignatureMaxAge: -time.Second}.WithDefaults().Validate(), "signature_max_age")
}

// End to end: a worker whose target requires signatures runs a signed request and rejects an
// unsigned one, and the rejection changes nothing on the target.
func TestSignedRequestsEndToEnd(t *testing.T) {
	t.Parallel()
	key, pub := signingTestKey(t)
	b := setup(t, func(cfg *Config) {
		// The default target on the test database, requiring signatures.
		cfg.Targets = []target.Config{{Name: "default", DSN: cfg.DatabaseURL, RequireSigned: true,
			Signers: []target.Signer{{ID: "deployer", PublicKey: pub}}}}
	})

	unsigned := request(contract.DirectionUp, mig("001", "create_t", "CREATE TABLE signed_t (id int)", "DROP TABLE signed_t"))
	evs := b.run(t, unsigned)
	require.Equal(t, contract.KindRunRejected, last(evs).Kind)
	require.Equal(t, contract.CodeSignatureRequired, last(evs).Error.Code)
	require.Zero(t, b.count(t, `SELECT count(*) FROM pg_tables WHERE tablename = 'signed_t'`))

	signedReq := request(contract.DirectionUp, mig("001", "create_t", "CREATE TABLE signed_t (id int)", "DROP TABLE signed_t"))
	data, err := contract.SignRequest(signedReq, key, "deployer", time.Now(), time.Time{})
	require.NoError(t, err)
	pub1, err := b.client.PublishRaw(context.Background(), signedReq.Target, signedReq.ID, data)
	require.NoError(t, err)
	evs = b.wait(t, signedReq.Target, pub1.Run)
	require.Equal(t, contract.KindRunCompleted, last(evs).Kind, kinds(evs))
	require.Equal(t, 1, b.count(t, `SELECT count(*) FROM pg_tables WHERE tablename = 'signed_t'`))
}

// A group drawing on a target that requires signatures: the group's request must be signed by
// the target's signers, and so must a request for one of its members, which is never an
// unsigned way into the database.
func TestGroupsAndTheirMembersAreHeldToTheirTargetsSigners(t *testing.T) {
	t.Parallel()
	key, pub := signingTestKey(t)
	dsn := testdbNew(t)
	createTenants(t, dsn, 1, 2)
	b := setupOn(t, dsn, withTenants(nil), func(cfg *Config) {
		cfg.Targets = []target.Config{{Name: "default", DSN: cfg.DatabaseURL, RequireSigned: true,
			Signers: []target.Signer{{ID: "deployer", PublicKey: pub}}}}
	})
	m := mig("001", "create_t", "CREATE TABLE signed_t (id int)", "")

	unsigned := groupRequest("tenants", nil, m)
	pub1, err := b.client.Publish(context.Background(), unsigned)
	require.NoError(t, err)
	evs := b.waitRollout(t, "tenants", pub1.Run)
	require.Equal(t, contract.KindRunRejected, last(evs).Kind, kinds(evs))
	require.Equal(t, contract.CodeSignatureRequired, last(evs).Error.Code)

	signed := groupRequest("tenants", nil, m)
	data, err := contract.SignRequest(signed, key, "deployer", time.Now(), time.Time{})
	require.NoError(t, err)
	pub2, err := b.client.PublishRaw(context.Background(), "tenants", signed.ID, data)
	require.NoError(t, err)
	evs = b.waitRollout(t, "tenants", contract.RolloutID("tenants", signed.ID))
	require.Equal(t, contract.KindRolloutCompleted, last(evs).Kind, "%v (%s)", kinds(evs), pub2.Run)

	// The members are known now; an unsigned request for one is refused all the same.
	direct := request(contract.DirectionUp, mig("002", "more", "CREATE TABLE more_t (id int)", ""))
	direct.Target = "tenants-tenant_1"
	evs = b.run(t, direct)
	require.Equal(t, contract.KindRunRejected, last(evs).Kind, kinds(evs))
	require.Equal(t, contract.CodeSignatureRequired, last(evs).Error.Code)
	require.Zero(t, b.count(t, `SELECT count(*) FROM pg_tables WHERE tablename = 'more_t'`))
}
