package submitcmd

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/testdb"
	"github.com/confiture-io/confiture-worker/internal/worker"
)

// keygen runs `submit keygen` into a fresh directory and returns the key file and the printed
// public key.
func keygen(t *testing.T, keyID string) (string, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "deploy.pem")
	r := submit(t, "keygen", "--out", path, "--key-id", keyID, "--target", "default")
	require.Equal(t, ExitOK, r.code, r)
	pub := ""
	for _, l := range strings.Split(r.stdout, "\n") {
		if v, ok := strings.CutPrefix(l, "public key: "); ok {
			pub = v
		}
	}
	require.NotEmpty(t, pub, r)
	return path, pub
}

func TestKeygen(t *testing.T) {
	t.Parallel()
	path, pub := keygen(t, "ci")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	require.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "a private key is for its owner only")
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(string(data), "-----BEGIN PRIVATE KEY-----\n"), "PKCS#8 PEM")
	priv, err := contract.ParsePrivateKey(data)
	require.NoError(t, err)
	want, err := contract.MarshalPublicKey(priv.Public().(ed25519.PublicKey))
	require.NoError(t, err)
	require.Equal(t, want, pub)

	r := submit(t, "keygen", "--out", path)
	require.Equal(t, ExitUsage, r.code, r)
	require.Contains(t, r.stderr, "exists already: keygen never overwrites a key")
	r = submit(t, "keygen")
	require.Equal(t, ExitUsage, r.code, r)
	require.Contains(t, r.stderr, "--out FILE is required")

	// OpenSSL reads the key and derives the same public key.
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl is not installed")
	}
	out, err := exec.Command("openssl", "pkey", "-in", path, "-pubout").Output()
	require.NoError(t, err)
	require.Contains(t, string(out), pub)
}

func TestSigningFlagsUsageErrors(t *testing.T) {
	t.Parallel()
	dir := validDir(t)
	key, _ := keygen(t, "ci")
	ecKey := filepath.Join(t.TempDir(), "ec.pem")
	require.NoError(t, os.WriteFile(ecKey, []byte("-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgv7AuCnp8B0LYPw2S\n8+yMD5N5w4IfwSaU1LL2t2+r98ShRANCAARbRCIyEmjwdq6vUNR9t7RStseZItRq\nYASDLNc8IOmUSVlCnnAOedubccbZ4lyeo+WsO8wSq2SW/qd+yiMYrUKH\n-----END PRIVATE KEY-----\n"), 0o600))
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"key id alone", []string{dir, "--key-id", "ci"}, "--key-id names the key of --sign-key"},
		{"expiry alone", []string{dir, "--sign-expires", "5m"}, "--sign-expires applies to a signed request"},
		{"key without id", []string{dir, "--sign-key", key}, "--sign-key needs --key-id"},
		{"bad key id", []string{dir, "--sign-key", key, "--key-id", "c i"}, `--key-id "c i" must be`},
		{"missing file", []string{dir, "--sign-key", filepath.Join(t.TempDir(), "none.pem"), "--key-id", "ci"}, "no such file"},
		{"not ed25519", []string{dir, "--sign-key", ecKey, "--key-id", "ci"}, "not an Ed25519 key"},
		{"not a key", []string{dir, "--sign-key", filepath.Join(dir, "001_create_users.up.sql"), "--key-id", "ci"}, "no PEM block"},
	} {
		r := submit(t, tc.args...)
		require.Equal(t, ExitUsage, r.code, "%s: %s", tc.name, r)
		require.Contains(t, r.stderr, tc.want, tc.name)
		require.Contains(t, r.stderr, "Run 'submit --help' for usage.", tc.name)
	}
}

// startSigningWorker starts a worker whose default target requires requests signed by the key
// pub, under the id "ci".
func startSigningWorker(t *testing.T, pub string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: needs PostgreSQL")
	}
	dsn := testdb.New(t)
	w, err := worker.New(worker.Config{
		DatabaseURL: dsn, DataDir: t.TempDir(), EmbeddedNATSPort: -1,
		Logger:      slog.New(slog.DiscardHandler),
		MaxAttempts: 2, RetryBackoff: 10 * time.Millisecond, RetryBackoffMax: 20 * time.Millisecond,
		FetchCooldown: time.Millisecond, ShutdownTimeout: 5 * time.Second, HTTPAddr: "off",
		Targets: []target.Config{{Name: "default", DSN: dsn, RequireSigned: true, Signers: []target.Signer{{ID: "ci", PublicKey: pub}}}},
	})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	require.NoError(t, w.Start(ctx))
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		require.NoError(t, w.Stop(ctx))
	})
	return w.NATSURL()
}

func TestE2ESignedSubmit(t *testing.T) {
	t.Parallel()
	key, pub := keygen(t, "ci")
	otherKey, _ := keygen(t, "ci")
	url := startSigningWorker(t, pub)
	dir := usersDir(t)

	r := submit(t, dir, "--nats-url", url, "--wait", "--timeout", "30s", "--id", "unsigned-1")
	require.Equal(t, ExitRejected, r.code, r)
	require.Contains(t, r.stdout+r.stderr, contract.CodeSignatureRequired, r)

	r = submit(t, dir, "--nats-url", url, "--wait", "--timeout", "30s", "--id", "wrong-key-1", "--sign-key", otherKey, "--key-id", "ci")
	require.Equal(t, ExitRejected, r.code, r)
	require.Contains(t, r.stdout+r.stderr, contract.CodeInvalidSignature, r)

	r = submit(t, dir, "--nats-url", url, "--wait", "--timeout", "30s", "--id", "signed-1", "--sign-key", key, "--key-id", "ci", "--sign-expires", "5m")
	require.Equal(t, ExitOK, r.code, r)
	require.Contains(t, r.stdout, "run completed in ", r)

	// From the environment, signed again: the same id and body follow the run that exists.
	r = submitEnv(t, testEnv(map[string]string{SignKeyEnv: key, SignKeyIDEnv: "ci"}), dir, "--nats-url", url, "--wait", "--timeout", "30s", "--id", "signed-1")
	require.Equal(t, ExitOK, r.code, r)
}

// An action on a target that accepts only signed requests is signed with the same flags.
func TestE2ESignedAction(t *testing.T) {
	t.Parallel()
	key, pub := keygen(t, "ci")
	url := startSigningWorker(t, pub)
	r := submit(t, "run", "fail", "signed-2", "--nats-url", url, "--reason", "wrong deploy")
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, `target "default" accepts only signed actions`, r)

	r = submit(t, validDir(t), "--nats-url", url, "--id", "signed-2", "--sign-key", key, "--key-id", "ci", "--wait", "--timeout", "30s")
	require.Equal(t, ExitOK, r.code, r)
	r = submit(t, "run", "pause", "signed-2", "--nats-url", url, "--sign-key", key, "--key-id", "ci")
	require.Equal(t, ExitFailed, r.code, r)
	require.Contains(t, r.stderr, "it is completed", r, "signed, the action reached the run, whose state refuses it")
	r = submit(t, "run", "pause", "signed-2", "--nats-url", url, "--key-id", "ci")
	require.Equal(t, ExitUsage, r.code, r)
}
