package contract

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// --- canonical form (RFC 8785) -----------------------------------------------------------------

// The number examples of RFC 8785, appendix B: IEEE 754 bits and their canonical text.
func TestFormatJSONNumberRFC8785(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		bits uint64
		want string
	}{
		{0x0000000000000000, "0"}, {0x8000000000000000, "0"}, {0x0000000000000001, "5e-324"},
		{0x8000000000000001, "-5e-324"}, {0x7fefffffffffffff, "1.7976931348623157e+308"},
		{0xffefffffffffffff, "-1.7976931348623157e+308"}, {0x4340000000000000, "9007199254740992"},
		{0xc340000000000000, "-9007199254740992"}, {0x4430000000000000, "295147905179352830000"},
		{0x44b52d02c7e14af5, "9.999999999999997e+22"}, {0x44b52d02c7e14af6, "1e+23"},
		{0x44b52d02c7e14af7, "1.0000000000000001e+23"}, {0x444b1ae4d6e2ef4e, "999999999999999700000"},
		{0x444b1ae4d6e2ef4f, "999999999999999900000"}, {0x444b1ae4d6e2ef50, "1e+21"},
		{0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"}, {0x3eb0c6f7a0b5ed8d, "0.000001"},
		{0x41b3de4355555553, "333333333.3333332"}, {0x41b3de4355555554, "333333333.33333325"},
		{0x41b3de4355555555, "333333333.3333333"}, {0x41b3de4355555556, "333333333.3333334"},
		{0x41b3de4355555557, "333333333.33333343"}, {0xbecbf647612f3696, "-0.0000033333333333333333"},
		{0x43143ff3c1cb0959, "1424953923781206.2"},
	} {
		f := math.Float64frombits(c.bits)
		for _, lit := range []string{strconv.FormatFloat(f, 'g', -1, 64), strconv.FormatFloat(f, 'e', 20, 64)} {
			got, err := FormatJSONNumber(lit)
			require.NoError(t, err, lit)
			require.Equal(t, c.want, got, "%016x written %s", c.bits, lit)
		}
	}
	for lit, want := range map[string]string{"1.0": "1", "-0.0": "0", "1e3": "1000", "4.50": "4.5", "2e-3": "0.002", "1E30": "1e+30", "100e-9": "1e-7"} {
		got, err := FormatJSONNumber(lit)
		require.NoError(t, err)
		require.Equal(t, want, got, lit)
	}
	_, err := FormatJSONNumber("1e400")
	require.ErrorContains(t, err, "not a finite double")
}

// The examples of RFC 8785, sections 3.2.2 and 3.2.3.
func TestCanonicalJSONRFC8785(t *testing.T) {
	t.Parallel()
	in := `{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`
	out, err := CanonicalJSON([]byte(in))
	require.NoError(t, err)
	require.Equal(t, `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`, string(out))

	// Member names sort by UTF-16 code units: the emoji (a surrogate pair, 0xD83D...) before
	// U+FB33, although its code point is larger.
	sorting := `{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}`
	out, err = CanonicalJSON([]byte(sorting))
	require.NoError(t, err)
	var names []string
	dec := json.NewDecoder(bytes.NewReader(out))
	_, _ = dec.Token()
	for dec.More() {
		k, _ := dec.Token()
		names = append(names, k.(string))
		_, _ = dec.Token()
	}
	require.Equal(t, []string{"\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001F600", "\ufb33"}, names)
	require.True(t, bytes.HasPrefix(out, []byte(`{"\r":"Carriage Return","1":"One","`+"\u0080"+`":"Control"`)), "%s", out)

	// Whitespace, member order and escapes do not change the canonical form.
	a, err := CanonicalJSON([]byte(`{"b":[1,2,{"y":"\u0041","x":true}],"a":"<&>"}`))
	require.NoError(t, err)
	b, err := CanonicalJSON([]byte("{ \"a\" : \"\\u003c&\\u003e\",\n\t\"b\" : [ 1.0 , 2e0 , { \"x\" : true , \"y\" : \"A\" } ] }"))
	require.NoError(t, err)
	require.Equal(t, string(a), string(b))
	require.Equal(t, `{"a":"<&>","b":[1,2,{"x":true,"y":"A"}]}`, string(a))
}

func TestCanonicalJSONRejects(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct{ in, msg string }{
		"duplicate member":    {`{"a":1,"b":{"c":1,"c":2}}`, `duplicate member "c"`},
		"invalid UTF-8":       {"{\"a\":\"\xff\"}", "not valid UTF-8"},
		"number out of range": {`{"a":1e400}`, "not a finite double"},
		"two values":          {`{} {}`, "more than one JSON value"},
		"trailing garbage":    {`{}x`, "malformed JSON"},
		"truncated":           {`{"a":[1,2`, "malformed JSON"},
		"empty":               {``, "unexpected end"},
		"too deep":            {strings.Repeat("[", MaxJSONDepth+1) + strings.Repeat("]", MaxJSONDepth+1), "nests more than 64 levels"},
	} {
		_, err := CanonicalJSON([]byte(tc.in))
		require.ErrorContains(t, err, tc.msg, name)
	}
	deepest := strings.Repeat("[", MaxJSONDepth) + strings.Repeat("]", MaxJSONDepth)
	_, err := CanonicalJSON([]byte(deepest))
	require.NoError(t, err, "exactly MaxJSONDepth levels")
}

// --- signatures ------------------------------------------------------------------------------

// testKeyPEM was made by `openssl genpkey -algorithm ed25519`; it signs nothing but tests.
const testKeyPEM = `-----BEGIN PRIVATE KEY-----
MC4CAQAwBQYDK2VwBCIEIKil1/wCivOVybH0cr3AL4hD5jQH1gIvOED9649qHDiS
-----END PRIVATE KEY-----
`

// testPublicKey is `openssl pkey -in key.pem -pubout` of testKeyPEM, without the markers.
const testPublicKey = "MCowBQYDK2VwAyEAK7OKevD//LcV/GdugSqct/bUJKo0NTTbgXnymTraTxk="

// A signature made with OpenSSL over the canonical form, as a client in another language
// would: `openssl pkeyutl -sign -inkey key.pem -rawin -in input.bin | base64`, where
// input.bin is wantInput, which is also what Python's json.dumps(request, sort_keys=True,
// separators=(",", ":"), ensure_ascii=False) writes for this request after deleting
// signature.sig.
func TestSignatureInteroperatesWithOpenSSL(t *testing.T) {
	t.Parallel()
	msg := `{"schema":"confiture.request/v1","id":"deploy-42","target":"app","direction":"up",
 "migrations":[{"version":"001","name":"init","up_sql":"CREATE TABLE t (id int)","checksum":"` + Checksum("CREATE TABLE t (id int)") + `",
   "hooks":[{"phase":"after_ddl","name":"n","hook":"sql","params":{"sql":"SELECT 1","ratio":1.50,"big":1e21,"text":"<é>"}}]}],
 "signature":{"key_id":"ci","alg":"ed25519","signed_at":"2024-06-01T12:00:00Z","sig":"k/RWWpZQKSWp3pMpcXtLq/cQKUb5WVxFepxeJ4D2usnzc2sFNfMsQlyIIKmHf+eWtOEyNL0I82saKK1CNMJQBw=="}}`
	const wantInput = `{"direction":"up","id":"deploy-42","migrations":[{"checksum":"2a0f26dda670d698fc504b41cf36a1d62c9330fac01a6196b32708f4fdaa570e","hooks":[{"hook":"sql","name":"n","params":{"big":1e+21,"ratio":1.5,"sql":"SELECT 1","text":"<é>"},"phase":"after_ddl"}],"name":"init","up_sql":"CREATE TABLE t (id int)","version":"001"}],"schema":"confiture.request/v1","signature":{"alg":"ed25519","key_id":"ci","signed_at":"2024-06-01T12:00:00Z"},"target":"app"}`
	input, err := SigningInput([]byte(msg))
	require.NoError(t, err)
	require.Equal(t, wantInput, string(input))

	req, err := DecodeRequest([]byte(msg))
	require.NoError(t, err)
	pub, err := ParsePublicKey(testPublicKey)
	require.NoError(t, err)
	require.NoError(t, VerifySignature([]byte(msg), req.Signature, pub))

	// Ed25519 is deterministic: Go signs the same bytes into the same signature.
	priv, err := ParsePrivateKey([]byte(testKeyPEM))
	require.NoError(t, err)
	require.Equal(t, req.Signature.Sig, base64.StdEncoding.EncodeToString(ed25519.Sign(priv, input)))
	require.Equal(t, pub, priv.Public())
}

func signedTestRequest(t *testing.T) (*Request, []byte, ed25519.PublicKey) {
	t.Helper()
	priv, err := ParsePrivateKey([]byte(testKeyPEM))
	require.NoError(t, err)
	req := validRequest()
	req.Signature = nil
	signedAt := time.Date(2024, 6, 1, 12, 0, 0, 500, time.FixedZone("CEST", 2*3600))
	data, err := SignRequest(req, priv, "ci@example.com", signedAt, signedAt.Add(10*time.Minute))
	require.NoError(t, err)
	return req, data, priv.Public().(ed25519.PublicKey)
}

func TestSignRequestVerifies(t *testing.T) {
	t.Parallel()
	req, data, pub := signedTestRequest(t)
	require.Equal(t, "ci@example.com", req.Signature.KeyID)
	require.Equal(t, "2024-06-01T10:00:00Z", req.Signature.SignedAt, "UTC, whole seconds")
	require.Equal(t, "2024-06-01T10:10:00Z", req.Signature.ExpiresAt)
	decoded, err := DecodeRequest(data)
	require.NoError(t, err, "a signed request is a valid request")
	require.Equal(t, req, decoded)
	require.NoError(t, VerifySignature(data, decoded.Signature, pub))

	// Re-encoded with other whitespace and member order, it still verifies.
	var loose map[string]any
	require.NoError(t, json.Unmarshal(data, &loose))
	pretty, err := json.MarshalIndent(loose, "", "   ")
	require.NoError(t, err)
	require.NotEqual(t, data, pretty)
	require.NoError(t, VerifySignature(pretty, decoded.Signature, pub))

	// The body leaves the signature out: the unsigned request has the same body.
	body, err := RequestBody(data)
	require.NoError(t, err)
	req.Signature = nil
	unsignedBody, err := RequestBody(mustJSON(t, req))
	require.NoError(t, err)
	require.Equal(t, string(unsignedBody), string(body))
	require.NotContains(t, string(body), "signature")
}

// Any change to what the request asks for, or to the signature's own fields, breaks it.
func TestSignatureCoversEverything(t *testing.T) {
	t.Parallel()
	_, data, pub := signedTestRequest(t)
	for name, edit := range map[string]func(m map[string]any){
		"id":            func(m map[string]any) { m["id"] = "deploy-43" },
		"target":        func(m map[string]any) { m["target"] = "other" },
		"direction":     func(m map[string]any) { m["direction"] = "down" },
		"dry_run":       func(m map[string]any) { m["dry_run"] = false },
		"force dropped": func(m map[string]any) { delete(m, "force") },
		"up_sql":        func(m map[string]any) { mig(m, 0)["up_sql"] = "DROP TABLE users;" },
		"migration added": func(m map[string]any) {
			m["migrations"] = append(m["migrations"].([]any), map[string]any{"version": "003", "name": "x", "up_sql": "x", "checksum": Checksum("x")})
		},
		"hook param": func(m map[string]any) {
			mig(m, 1)["hooks"].([]any)[0].(map[string]any)["params"].(map[string]any)["batch_size"] = 1001
		},
		"extra member":  func(m map[string]any) { m["extra"] = true },
		"signed_at":     func(m map[string]any) { sig(m)["signed_at"] = "2024-06-01T10:14:00Z" },
		"expires_at":    func(m map[string]any) { sig(m)["expires_at"] = "2030-01-01T00:00:00Z" },
		"no expires_at": func(m map[string]any) { delete(sig(m), "expires_at") },
		"key_id":        func(m map[string]any) { sig(m)["key_id"] = "other" },
		"sig":           func(m map[string]any) { sig(m)["sig"] = strings.Repeat("A", 86) + "==" },
	} {
		var m map[string]any
		require.NoError(t, json.Unmarshal(data, &m))
		edit(m)
		changed := mustJSON(t, m)
		var s Signature
		require.NoError(t, json.Unmarshal(mustJSON(t, m["signature"]), &s))
		err := VerifySignature(changed, &s, pub)
		require.Error(t, err, name)
		require.Contains(t, err.Error(), "does not match", name)
	}
	other, _, err := ed25519.GenerateKey(nil)
	require.NoError(t, err)
	var s Signature
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	require.NoError(t, json.Unmarshal(mustJSON(t, m["signature"]), &s))
	require.ErrorContains(t, VerifySignature(data, &s, other), "does not match")
	require.ErrorContains(t, VerifySignature(data, nil, pub), "not signed")
	bad := s
	bad.Sig = "!!"
	require.ErrorContains(t, VerifySignature(data, &bad, pub), "not a 64-byte signature")
	bad = s
	bad.Alg = "rsa"
	require.ErrorContains(t, VerifySignature(data, &bad, pub), "not supported")
}

func mig(m map[string]any, i int) map[string]any {
	return m["migrations"].([]any)[i].(map[string]any)
}

func sig(m map[string]any) map[string]any { return m["signature"].(map[string]any) }

func TestKeyFormats(t *testing.T) {
	t.Parallel()
	priv, err := ParsePrivateKey([]byte(testKeyPEM))
	require.NoError(t, err)
	pemOut, err := MarshalPrivateKey(priv)
	require.NoError(t, err)
	require.Equal(t, testKeyPEM, string(pemOut), "the same PKCS#8 PEM as openssl writes")

	pub := priv.Public().(ed25519.PublicKey)
	line, err := MarshalPublicKey(pub)
	require.NoError(t, err)
	require.Equal(t, testPublicKey, line)
	fromPEM, err := ParsePublicKey("-----BEGIN PUBLIC KEY-----\n" + testPublicKey + "\n-----END PUBLIC KEY-----\n")
	require.NoError(t, err)
	require.Equal(t, pub, fromPEM)
	fromLine, err := ParsePublicKey("  " + testPublicKey + "\n")
	require.NoError(t, err)
	require.Equal(t, pub, fromLine)

	for in, msg := range map[string]string{
		"": "no PEM block",
		"-----BEGIN OPENSSH PRIVATE KEY-----\nAAAA\n-----END OPENSSH PRIVATE KEY-----\n": `"OPENSSH PRIVATE KEY"`,
		// An EC P-256 key, in PKCS#8.
		"-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgv7AuCnp8B0LYPw2S\n8+yMD5N5w4IfwSaU1LL2t2+r98ShRANCAARbRCIyEmjwdq6vUNR9t7RStseZItRq\nYASDLNc8IOmUSVlCnnAOedubccbZ4lyeo+WsO8wSq2SW/qd+yiMYrUKH\n-----END PRIVATE KEY-----\n": "not an Ed25519 key",
	} {
		_, err := ParsePrivateKey([]byte(in))
		require.ErrorContains(t, err, msg, in)
	}
	for in, msg := range map[string]string{
		"not base64!": "not base64",
		"AAAA":        "not a SubjectPublicKeyInfo",
		"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n": "PUBLIC KEY",
		// An EC P-256 public key.
		"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEW0QiMhJo8Haur1DUfbe0UrbHmSLUamAEgyzXPCDplElZQp5wDnnbm3HG2eJcnqPlrDvMEqtklv6nfsojGK1Chw==": "not an Ed25519 key",
	} {
		_, err := ParsePublicKey(in)
		require.ErrorContains(t, err, msg, in)
	}
}

// --- limits ------------------------------------------------------------------------------------

func requestWith(migs []Migration) []byte {
	r := Request{Schema: RequestSchemaV1, ID: "limits", Target: "t", Direction: DirectionUp, Migrations: migs}
	data, _ := json.Marshal(r)
	return data
}

func simpleMigration(i int, hooks ...HookSpec) Migration {
	up := "SELECT " + strconv.Itoa(i)
	return Migration{Version: fmt.Sprintf("%04d", i), Name: "m", UpSQL: up, Checksum: Checksum(up), Hooks: hooks}
}

func nested(depth int) map[string]any {
	m := map[string]any{"leaf": 1}
	for range depth - 1 {
		m = map[string]any{"x": m}
	}
	return m
}

// Every limit is rejected with a message that names it.
func TestLimitsAreRejectedByName(t *testing.T) {
	t.Parallel()
	hooks := func(n int) []HookSpec {
		out := make([]HookSpec, n)
		for i := range out {
			out[i] = HookSpec{Phase: PhaseAfterDDL, Name: "h" + strconv.Itoa(i), Hook: "sql"}
		}
		return out
	}
	migrations := func(n int, hooksEach int) []Migration {
		out := make([]Migration, n)
		for i := range out {
			out[i] = simpleMigration(i, hooks(hooksEach)...)
		}
		return out
	}
	longSQL := strings.Repeat("x", MaxSQLChars+1)
	deps := make([]string, MaxDependsOn+1)
	for i := range deps {
		deps[i] = "d" + strconv.Itoa(i)
	}
	for _, tc := range []struct {
		name string
		data []byte
		msg  string
	}{
		{"migrations", requestWith(migrations(MaxMigrations+1, 0)), "/migrations: must have at most 1000 items, got 1001 (the limit of migrations per request)"},
		{"hooks per migration", requestWith(migrations(1, MaxHooksPerMigration+1)), "/migrations/0/hooks: must have at most 200 items, got 201 (the limit of hooks per migration)"},
		{"SQL size", requestWith([]Migration{{Version: "1", Name: "big", UpSQL: longSQL, Checksum: Checksum(longSQL)}}), "/migrations/0/up_sql: must be at most 1048576 characters long, got 1048577 (the limit of SQL size per migration)"},
		{"depends_on", requestWith([]Migration{simpleMigration(1, HookSpec{Phase: PhaseAfterDDL, Name: "a", Hook: "sql", DependsOn: deps})}), "(the limit of depends_on entries per hook)"},
		{"hooks per request", requestWith(migrations(MaxHooksPerRequest/MaxHooksPerMigration+1, MaxHooksPerMigration)), "the migrations declare 10200 hooks together, over the limit of 10000 hooks per request"},
		{"params depth", requestWith([]Migration{simpleMigration(1, HookSpec{Phase: PhaseAfterDDL, Name: "deep", Hook: "sql", Params: nested(MaxParamsDepth + 1)})}),
			`params of hook "deep" of migration 0001_m (phase "after_ddl") nest more than 32 levels deep (the limit of params depth)`},
		{"JSON nesting", []byte(`{"schema":"confiture.request/v1","x":` + strings.Repeat("[", 70) + strings.Repeat("]", 70) + `}`), "request nests 71 levels deep, over the limit of 64 levels of JSON nesting"},
		{"duplicate member", []byte(`{"schema":"confiture.request/v1","id":"a","target":"t","direction":"up","direction":"down","migrations":[{"version":"1","name":"x","up_sql":"x","checksum":"` + Checksum("x") + `"}]}`), `duplicate member "direction"`},
	} {
		_, err := DecodeRequest(tc.data)
		var de *DecodeError
		require.ErrorAs(t, err, &de, tc.name)
		require.Equal(t, CodeInvalidRequest, de.Code, tc.name)
		require.Contains(t, de.Message, tc.msg, tc.name)
	}
	// At the limits, requests are fine.
	for name, data := range map[string][]byte{
		"params depth": requestWith([]Migration{simpleMigration(1, HookSpec{Phase: PhaseAfterDDL, Name: "deep", Hook: "sql", Params: nested(MaxParamsDepth)})}),
		"hooks":        requestWith(migrations(MaxHooksPerRequest/MaxHooksPerMigration, MaxHooksPerMigration)),
		"migrations":   requestWith(migrations(MaxMigrations, 0)),
	} {
		_, err := DecodeRequest(data)
		require.NoError(t, err, name)
	}
}

// The Go limits are the schema's.
func TestLimitsMatchSchema(t *testing.T) {
	t.Parallel()
	req := loadSchema(t, RequestSchemaFile)
	props := req["properties"].(map[string]any)
	migProps := def(t, req, "Migration")["properties"].(map[string]any)
	hookProps := def(t, req, "HookSpec")["properties"].(map[string]any)
	require.EqualValues(t, MaxMigrations, props["migrations"].(map[string]any)["maxItems"])
	require.EqualValues(t, MaxHooksPerMigration, migProps["hooks"].(map[string]any)["maxItems"])
	require.EqualValues(t, MaxSQLChars, migProps["up_sql"].(map[string]any)["maxLength"])
	require.EqualValues(t, MaxSQLChars, migProps["down_sql"].(map[string]any)["maxLength"])
	require.EqualValues(t, MaxDependsOn, hookProps["depends_on"].(map[string]any)["maxItems"])
	require.Equal(t, KeyIDPattern.String(), def(t, req, "Signature")["properties"].(map[string]any)["key_id"].(map[string]any)["pattern"])
}

// Decoding costs memory in proportion to the message, whatever its shape: the worst shapes
// allowed (many tiny hooks, params at the depth limit, many tiny values) stay within a fixed
// factor of the message size (allocated in all, not live at once: about 200 times for a
// message of tiny values, which the JSON Schema library, encoding/json and the canonical form
// each parse once).
func TestDecodeRequestMemoryIsBounded(t *testing.T) {
	tiny := make([]any, 0, 60000)
	for range 60000 {
		tiny = append(tiny, 0)
	}
	deep := make([]HookSpec, 0, 200)
	for i := range 200 {
		deep = append(deep, HookSpec{Phase: PhaseAfterDDL, Name: "h" + strconv.Itoa(i), Hook: "sql", Params: nested(MaxParamsDepth)})
	}
	manyHooks := make([]Migration, 0, 50)
	for i := range 50 {
		hs := make([]HookSpec, 200)
		for j := range hs {
			hs[j] = HookSpec{Phase: PhaseAfterDDL, Name: "h" + strconv.Itoa(j), Hook: "a"}
		}
		manyHooks = append(manyHooks, simpleMigration(i, hs...))
	}
	for name, data := range map[string][]byte{
		"tiny values": requestWith([]Migration{simpleMigration(1, HookSpec{Phase: PhaseAfterDDL, Name: "a", Hook: "sql", Params: map[string]any{"v": tiny}})}),
		"deep params": requestWith([]Migration{simpleMigration(1, deep...)}),
		"many hooks":  requestWith(manyHooks),
	} {
		_, _ = DecodeRequest(data) // warm up the compiled schema
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		_, body, err := DecodeRequestBody(data)
		runtime.ReadMemStats(&after)
		require.NoError(t, err, name)
		require.NotEmpty(t, body)
		allocated := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d bytes of request, %d bytes allocated (%.0fx)", name, len(data), allocated, float64(allocated)/float64(len(data)))
		require.Less(t, allocated, uint64(300*len(data)+(4<<20)), name)
	}
}

// --- fuzzing -----------------------------------------------------------------------------------

// FuzzCanonicalJSON: no input panics; a canonical form is valid JSON, its own canonical form,
// means what the input means, and is at most 6 times longer than the input (1e20 becomes
// 100000000000000000000).
func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range []string{`{}`, `[]`, `"x"`, `1e20`, `{"a":[1,2.50,-0,1e-7],"b":"\u00e9\n"}`, `{"a":1,"a":2}`, `[[[[]]]]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		out, err := CanonicalJSON(data)
		if err != nil {
			require.Nil(t, out)
			require.LessOrEqual(t, len(err.Error()), 300)
			return
		}
		require.True(t, json.Valid(out), "%s", out)
		require.LessOrEqual(t, len(out), 6*len(data)+1)
		again, err := CanonicalJSON(out)
		require.NoError(t, err)
		require.Equal(t, string(out), string(again), "canonical form is stable")
		var x, y any
		require.NoError(t, json.Unmarshal(data, &x))
		require.NoError(t, json.Unmarshal(out, &y))
		require.Equal(t, x, y, "same meaning")
	})
}
