package signing

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/target"
)

// testKeyPEM was made by `openssl genpkey -algorithm ed25519`; it signs nothing but tests (the
// seed corpus of FuzzVerifyRequest is signed with it).
const testKeyPEM = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIKil1/wCivOVybH0cr3AL4hD5jQH1gIvOED9649qHDiS
-----END PRIVATE KEY-----
`

const testPublicKey = "MCowBQYDK2VwAyEAK7OKevD//LcV/GdugSqct/bUJKo0NTTbgXnymTraTxk="

// signedAt is when the test requests are signed; they reach NATS a minute later.
var (
	signedAt   = time.Date(2024, 6, 1, 12, 0, 0, 0, time.UTC)
	receivedAt = signedAt.Add(time.Minute)
)

func testKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	k, err := contract.ParsePrivateKey([]byte(testKeyPEM))
	require.NoError(t, err)
	return k
}

func request(targetName string) *contract.Request {
	up := "CREATE TABLE t (id int)"
	return &contract.Request{
		Schema: contract.RequestSchemaV1, ID: "deploy-1", Target: targetName, Direction: contract.DirectionUp,
		Migrations: []contract.Migration{{Version: "001", Name: "init", UpSQL: up, Checksum: contract.Checksum(up),
			Hooks: []contract.HookSpec{{Phase: contract.PhaseAfterDDL, Name: "seed", Hook: "sql", Params: map[string]any{"sql": "INSERT INTO t VALUES (1)"}}}}},
	}
}

// sign signs a request for targetName and decodes it as intake does.
func sign(t testing.TB, key ed25519.PrivateKey, keyID, targetName string, at, expires time.Time, edit ...func(*contract.Request)) (*contract.Request, []byte) {
	t.Helper()
	r := request(targetName)
	for _, e := range edit {
		e(r)
	}
	data, err := contract.SignRequest(r, key, keyID, at, expires)
	require.NoError(t, err)
	decoded, err := contract.DecodeRequest(data)
	require.NoError(t, err)
	return decoded, data
}

func testPolicy(t testing.TB) *Policy {
	t.Helper()
	p, err := NewPolicy([]target.Config{
		{Name: "app", RequireSigned: true, Signers: []target.Signer{{ID: "ci", PublicKey: testPublicKey}}},
		{Name: "optional", Signers: []target.Signer{{ID: "ci", PublicKey: "-----BEGIN PUBLIC KEY-----\n" + testPublicKey + "\n-----END PUBLIC KEY-----\n"}}},
		{Name: "open"},
	}, 15*time.Minute)
	require.NoError(t, err)
	return p
}

func requireCode(t *testing.T, err error, code, contains string) {
	t.Helper()
	var de *contract.DecodeError
	require.True(t, errors.As(err, &de), "want a *contract.DecodeError, got %v", err)
	require.Equal(t, code, de.Code, de.Message)
	require.Contains(t, de.Message, contains)
}

func TestVerify(t *testing.T) {
	t.Parallel()
	p := testPolicy(t)
	key := testKey(t)
	_, other, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)

	// Accepted.
	req, data := sign(t, key, "ci", "app", signedAt, time.Time{})
	require.NoError(t, p.Verify(req, data, receivedAt))
	req, data = sign(t, key, "ci", "app", signedAt, signedAt.Add(5*time.Minute))
	require.NoError(t, p.Verify(req, data, receivedAt))
	require.NoError(t, p.Verify(req, data, signedAt.Add(-30*time.Second)), "clock skew up to a minute")
	require.NoError(t, p.Verify(request("open"), mustJSON(t, request("open")), receivedAt), "no signers: unsigned is fine")
	require.NoError(t, p.Verify(request("optional"), mustJSON(t, request("optional")), receivedAt), "signers but not required")
	req, data = sign(t, other, "whoever", "open", signedAt, time.Time{})
	require.NoError(t, p.Verify(req, data, receivedAt), "a target without signers cannot check a signature, and ignores it")
	require.NoError(t, p.Verify(request("unknown"), mustJSON(t, request("unknown")), receivedAt), "an unknown target is the checker's business")
	require.True(t, p.Requires("app"))
	require.False(t, p.Requires("optional"))
	require.Equal(t, 15*time.Minute, p.MaxAge())

	// Unsigned.
	requireCode(t, p.Verify(request("app"), mustJSON(t, request("app")), receivedAt), contract.CodeSignatureRequired,
		`target "app" accepts only signed requests`)

	// Wrongly signed.
	req, data = sign(t, key, "someone", "app", signedAt, time.Time{})
	requireCode(t, p.Verify(req, data, receivedAt), contract.CodeInvalidSignature, `key "someone" is not one of the signers of target "app"`)
	req, data = sign(t, other, "ci", "app", signedAt, time.Time{})
	requireCode(t, p.Verify(req, data, receivedAt), contract.CodeInvalidSignature, `signature by key "ci" is not valid: the signature does not match the request`)
	req, data = sign(t, other, "ci", "optional", signedAt, time.Time{})
	requireCode(t, p.Verify(req, data, receivedAt), contract.CodeInvalidSignature, "not valid")

	// Changed after signing.
	req, data = sign(t, key, "ci", "app", signedAt, time.Time{})
	tampered := bytes.Replace(data, []byte("INSERT INTO t VALUES (1)"), []byte("DROP TABLE t CASCADE"), 1)
	require.NotEqual(t, data, tampered)
	treq, err := contract.DecodeRequest(tampered)
	require.NoError(t, err)
	requireCode(t, p.Verify(treq, tampered, receivedAt), contract.CodeInvalidSignature, "the request was changed after it was signed")
	// A signature moved to another request.
	_, otherData := sign(t, key, "ci", "app", signedAt, time.Time{}, func(r *contract.Request) { r.ID = "deploy-2" })
	var moved map[string]any
	require.NoError(t, json.Unmarshal(otherData, &moved))
	moved["signature"] = req.Signature
	movedData := mustJSON(t, moved)
	mreq, err := contract.DecodeRequest(movedData)
	require.NoError(t, err)
	requireCode(t, p.Verify(mreq, movedData, receivedAt), contract.CodeInvalidSignature, "does not match")

	// Expired, or from the future.
	req, data = sign(t, key, "ci", "app", signedAt, time.Time{})
	requireCode(t, p.Verify(req, data, signedAt.Add(16*time.Minute)), contract.CodeSignatureExpired,
		"signature expired: signed at 2024-06-01T12:00:00Z, 16m0s before the request reached NATS, over the signature_max_age of 15m0s")
	requireCode(t, p.Verify(req, data, signedAt.Add(-2*time.Minute)), contract.CodeSignatureExpired, "more than the 1m0s allowed for clock skew")
	req, data = sign(t, key, "ci", "app", signedAt, signedAt.Add(30*time.Second))
	requireCode(t, p.Verify(req, data, receivedAt), contract.CodeSignatureExpired, "signature expired at 2024-06-01T12:00:30Z (expires_at)")
	req, data = sign(t, key, "ci", "app", signedAt, signedAt.Add(-time.Second))
	requireCode(t, p.Verify(req, data, receivedAt), contract.CodeInvalidSignature, "expires_at 2024-06-01T11:59:59Z is not after signed_at")
}

func TestNewPolicyRejectsBadConfiguration(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		targets []target.Config
		msg     string
	}{
		{"required without signers", []target.Config{{Name: "app", RequireSigned: true}}, `target "app": require_signed is set but signers is empty`},
		{"bad key", []target.Config{{Name: "app", Signers: []target.Signer{{ID: "ci", PublicKey: "no!"}}}}, `target "app": signer "ci": public_key: not base64`},
		{"not ed25519", []target.Config{{Name: "app", Signers: []target.Signer{{ID: "ci", PublicKey: "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEW0QiMhJo8Haur1DUfbe0UrbHmSLUamAEgyzXPCDplElZQp5wDnnbm3HG2eJcnqPlrDvMEqtklv6nfsojGK1Chw=="}}}}, "not an Ed25519 key"},
		{"duplicate id", []target.Config{{Name: "app", Signers: []target.Signer{{ID: "ci", PublicKey: testPublicKey}, {ID: "ci", PublicKey: testPublicKey}}}}, `signer "ci" is listed twice`},
		{"bad id", []target.Config{{Name: "app", Signers: []target.Signer{{ID: "c i", PublicKey: testPublicKey}}}}, `signers[0]: id "c i" must be`},
	} {
		_, err := NewPolicy(tc.targets, 0)
		require.ErrorContains(t, err, tc.msg, tc.name)
	}
	_, err := NewPolicy(nil, -time.Second)
	require.ErrorContains(t, err, "signature_max_age must be positive")
	p, err := NewPolicy(nil, 0)
	require.NoError(t, err)
	require.Equal(t, DefaultMaxAge, p.MaxAge())
}

func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return b
}

// FuzzVerifyRequest mutates signed requests (the seeds here and in
// testdata/fuzz/FuzzVerifyRequest are these, signed with testKeyPEM at signedAt): whatever the
// input, Verify never panics and rejects with a signature code; and it accepts a request for
// the target that requires signatures only when its signed content is exactly one that was
// signed, asking for exactly the same thing (whitespace, member order and escapes may differ).
func FuzzVerifyRequest(f *testing.F) {
	key := testKey(f)
	signed := map[string][]byte{} // signing input -> the request's meaning
	for _, edit := range []func(*contract.Request){
		func(*contract.Request) {},
		func(r *contract.Request) {
			r.DryRun, r.Force, r.To, r.RequestedBy = true, true, "001", "ci <ci@example.com>"
		},
	} {
		req, data := sign(f, key, "ci", "app", signedAt, signedAt.Add(10*time.Minute), edit)
		f.Add(data)
		in, err := contract.SigningInput(data)
		require.NoError(f, err)
		signed[string(in)] = meaning(f, req)
	}
	f.Add(mustJSON(f, request("app")))
	p := testPolicy(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := contract.DecodeRequest(data)
		if err != nil {
			return
		}
		err = p.Verify(req, data, receivedAt)
		if err != nil {
			var de *contract.DecodeError
			require.ErrorAs(t, err, &de)
			require.Contains(t, []string{contract.CodeSignatureRequired, contract.CodeInvalidSignature, contract.CodeSignatureExpired}, de.Code)
			require.LessOrEqual(t, len(de.Message), 1024)
			return
		}
		if req.Target != "app" {
			return // the other targets accept unsigned requests
		}
		in, err := contract.SigningInput(data)
		require.NoError(t, err)
		want, ok := signed[string(in)]
		require.True(t, ok, "accepted a request nobody signed: %s", in)
		require.Equal(t, string(want), string(meaning(t, req)), "accepted a request that asks for something else than what was signed")
	})
}

// meaning is what a request asks for, as the worker reads it.
func meaning(t testing.TB, req *contract.Request) []byte {
	r := *req
	r.Signature = nil
	return mustJSON(t, &r)
}
