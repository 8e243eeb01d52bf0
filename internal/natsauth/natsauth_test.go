package natsauth_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/goccy/go-yaml"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/natsauth"
	"github.com/confiture-io/confiture-worker/internal/natsauth/natsauthtest"
)

const pw = "s3cr3t-pass-word"

func TestValidateNamesTheProblem(t *testing.T) {
	t.Parallel()
	seed, _ := natsauthtest.NKeyUser(t)
	ca := natsauthtest.NewCA(t)
	cert, key := ca.ClientCert(t, "client")
	missing := filepath.Join(t.TempDir(), "missing")
	garbage := natsauthtest.WriteFile(t, "garbage", []byte("not a key\n"))
	empty := natsauthtest.WriteFile(t, "empty", []byte("\n"))
	pwFile := natsauthtest.WriteFile(t, "pw", []byte(pw+"\n"))
	for _, tc := range []struct {
		name string
		o    natsauth.Options
		want string // "" = valid
	}{
		{"none", natsauth.Options{}, ""},
		{"user and password", natsauth.Options{User: "alice", Password: pw}, ""},
		{"user and password file", natsauth.Options{User: "alice", PasswordFile: pwFile}, ""},
		{"nkey", natsauth.Options{NKey: seed}, ""},
		{"token", natsauth.Options{Token: pw}, ""},
		{"tls", natsauth.Options{CA: ca.File, Cert: cert, Key: key}, ""},
		{"two methods", natsauth.Options{User: "alice", Password: pw, Token: pw}, "choose one method, got a user and password and a token"},
		{"creds and nkey", natsauth.Options{Creds: seed, NKey: seed}, "choose one method, got a credentials file and an NKey seed"},
		{"user without password", natsauth.Options{User: "alice"}, `user "alice" has no password`},
		{"password without user", natsauth.Options{Password: pw}, "a password without a user"},
		{"password twice", natsauth.Options{User: "alice", Password: pw, PasswordFile: pwFile}, "the password is given twice, directly and in the file " + pwFile},
		{"missing password file", natsauth.Options{User: "alice", PasswordFile: missing}, "NATS password file " + missing + ": no such file"},
		{"empty token file", natsauth.Options{TokenFile: empty}, "NATS token file " + empty + " is empty"},
		{"missing nkey", natsauth.Options{NKey: missing}, "NATS NKey seed file " + missing + ": no such file"},
		{"unreadable seed", natsauth.Options{NKey: garbage}, "NATS NKey seed file " + garbage + ": no NKey user seed"},
		{"missing creds", natsauth.Options{Creds: missing}, "NATS credentials file " + missing + ": no such file"},
		{"not creds", natsauth.Options{Creds: seed}, "NATS credentials file " + seed + ": not a credentials file"},
		{"missing CA", natsauth.Options{CA: missing}, "NATS TLS CA file " + missing + ": no such file"},
		{"CA without certificate", natsauth.Options{CA: garbage}, "NATS TLS CA file " + garbage + ": no PEM certificate in it"},
		{"cert without key", natsauth.Options{Cert: cert}, "has no key"},
		{"key without cert", natsauth.Options{Key: key}, "has no certificate"},
		{"cert and wrong key", natsauth.Options{Cert: cert, Key: garbage}, "NATS TLS client certificate " + cert + " and key " + garbage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.o.Validate()
			if tc.want == "" {
				require.NoError(t, err)
				return
			}
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), pw)
		})
	}
}

func TestSecretsNeverShow(t *testing.T) {
	t.Parallel()
	o := natsauth.Options{User: "alice", Password: pw, CA: "/etc/ca.pem"}
	tok := natsauth.Options{Token: pw, TokenFile: "/run/secrets/token"}
	for _, s := range []string{
		fmt.Sprint(o), fmt.Sprintf("%+v %#v %s %q %v", o, o, o.Password, o.Password, tok), o.Describe(), tok.Describe(),
	} {
		require.NotContains(t, s, pw)
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("configuration", "nats", o, "tok", tok)
	require.NotContains(t, buf.String(), pw)
	require.Contains(t, buf.String(), `"nats":{"auth":"user","user":"alice","password":"xxxxx","ca":"/etc/ca.pem","tls":true}`)
	j, err := json.Marshal(o)
	require.NoError(t, err)
	require.NotContains(t, string(j), pw)
	y, err := yaml.Marshal(o)
	require.NoError(t, err)
	require.NotContains(t, string(y), pw)

	// Decoding takes the value as it is.
	var back natsauth.Options
	require.NoError(t, yaml.Unmarshal([]byte("user: alice\npassword: "+pw+"\n"), &back))
	require.Equal(t, natsauth.Secret(pw), back.Password)
	require.NoError(t, json.Unmarshal([]byte(`{"Token":"`+pw+`"}`), &back))
	require.Equal(t, natsauth.Secret(pw), back.Token)
}

func TestMergeAndEnv(t *testing.T) {
	t.Parallel()
	env := map[string]string{"X_NATS_USER": "bob", "X_NATS_PASSWORD": pw, "X_NATS_CA": "/ca.pem", "X_NATS_TLS": "true"}
	fromEnv, err := natsauth.FromEnv(func(k string) string { return env[k] }, "X_")
	require.NoError(t, err)
	require.Equal(t, natsauth.Options{User: "bob", Password: pw, CA: "/ca.pem", TLS: true}, fromEnv)
	_, err = natsauth.FromEnv(func(k string) string { return map[string]string{"X_NATS_TLS": "yes please"}[k] }, "X_")
	require.ErrorContains(t, err, `X_NATS_TLS: "yes please" is not true or false`)

	file := natsauth.Options{User: "alice", PasswordFile: "/pw", Cert: "/c.pem", Key: "/k.pem"}
	// Same method: field by field; the password's source is replaced as a whole.
	require.Equal(t, natsauth.Options{User: "bob", Password: pw, CA: "/ca.pem", Cert: "/c.pem", Key: "/k.pem", TLS: true}, file.Merge(fromEnv))
	// Only the user from above: the password stays.
	require.Equal(t, natsauth.Options{User: "carol", PasswordFile: "/pw", Cert: "/c.pem", Key: "/k.pem"}, file.Merge(natsauth.Options{User: "carol"}))
	// Another method replaces the method below, and keeps TLS.
	require.Equal(t, natsauth.Options{Creds: "/u.creds", Cert: "/c.pem", Key: "/k.pem"}, file.Merge(natsauth.Options{Creds: "/u.creds"}))
	require.Equal(t, file, file.Merge(natsauth.Options{}))
}

// connect connects with o to s and reports the error.
func connect(t *testing.T, url string, o natsauth.Options) (*nats.Conn, error) {
	t.Helper()
	opts, err := o.NATSOptions()
	require.NoError(t, err)
	nc, err := nats.Connect(url, append(opts, nats.Timeout(5*time.Second))...)
	if err == nil {
		t.Cleanup(nc.Close)
	}
	return nc, err
}

// usesJetStream checks that the connection can use JetStream.
func usesJetStream(t *testing.T, nc *nats.Conn) {
	t.Helper()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{Name: "T", Subjects: []string{"t.>"}})
	require.NoError(t, err)
	_, err = js.Publish(ctx, "t.x", []byte("hello"))
	require.NoError(t, err)
}

func requireAuthFailure(t *testing.T, o natsauth.Options, err error, want string) {
	t.Helper()
	require.Error(t, err)
	d, ok := o.Diagnose(err)
	require.True(t, ok, err)
	require.True(t, d.Auth, d)
	require.Equal(t, "NATS authorization failed", d.Problem)
	require.Contains(t, d.String(), want)
	require.NotContains(t, d.String(), pw)
}

func TestAgainstServers(t *testing.T) {
	t.Parallel()
	t.Run("users and nkeys", func(t *testing.T) {
		t.Parallel()
		seed, pub := natsauthtest.NKeyUser(t)
		s := natsauthtest.Start(t, &server.Options{
			Users: []*server.User{{Username: "alice", Password: pw}},
			Nkeys: []*server.NkeyUser{{Nkey: pub}},
		})
		nc, err := connect(t, s.ClientURL(), natsauth.Options{User: "alice", Password: pw})
		require.NoError(t, err)
		usesJetStream(t, nc)
		nc, err = connect(t, s.ClientURL(), natsauth.Options{NKey: seed})
		require.NoError(t, err)
		usesJetStream(t, nc)

		o := natsauth.Options{}
		_, err = connect(t, s.ClientURL(), o)
		requireAuthFailure(t, o, err, "the server requires credentials and none were given")
		o = natsauth.Options{User: "alice", Password: "wrong-" + pw}
		_, err = connect(t, s.ClientURL(), o)
		requireAuthFailure(t, o, err, `the server refused user "alice" (nats: Authorization Violation)`)
		otherSeed, _ := natsauthtest.NKeyUser(t)
		o = natsauth.Options{NKey: otherSeed}
		_, err = connect(t, s.ClientURL(), o)
		requireAuthFailure(t, o, err, "the server refused the NKey seed file "+otherSeed)

		ca := natsauthtest.NewCA(t)
		o = natsauth.Options{User: "alice", Password: pw, CA: ca.File}
		_, err = connect(t, s.ClientURL(), o)
		d, ok := o.Diagnose(err)
		require.True(t, ok, err)
		require.Equal(t, "NATS TLS failed: TLS was asked for but the server does not offer it (nats: secure connection not available)", d.String())
	})
	t.Run("token", func(t *testing.T) {
		t.Parallel()
		s := natsauthtest.Start(t, &server.Options{Authorization: pw})
		tokenFile := natsauthtest.WriteFile(t, "token", []byte(pw+"\n"))
		nc, err := connect(t, s.ClientURL(), natsauth.Options{TokenFile: tokenFile})
		require.NoError(t, err)
		usesJetStream(t, nc)
		o := natsauth.Options{Token: "not-the-token"}
		_, err = connect(t, s.ClientURL(), o)
		requireAuthFailure(t, o, err, "the server refused a token")
	})
	t.Run("credentials file", func(t *testing.T) {
		t.Parallel()
		op := natsauthtest.NewOperator(t)
		opts := &server.Options{}
		op.Configure(opts)
		s := natsauthtest.Start(t, opts)
		creds := op.Creds(t, "alice", nil, nil)
		nc, err := connect(t, s.ClientURL(), natsauth.Options{Creds: creds})
		require.NoError(t, err)
		usesJetStream(t, nc)
		o := natsauth.Options{}
		_, err = connect(t, s.ClientURL(), o)
		requireAuthFailure(t, o, err, "none were given")
		other := natsauthtest.NewOperator(t).Creds(t, "mallory", nil, nil)
		o = natsauth.Options{Creds: other}
		_, err = connect(t, s.ClientURL(), o)
		requireAuthFailure(t, o, err, "the server refused the credentials file "+other)
	})
	t.Run("TLS with a CA and client certificates", func(t *testing.T) {
		t.Parallel()
		ca := natsauthtest.NewCA(t)
		opts := &server.Options{Users: []*server.User{{Username: "alice", Password: pw}}}
		ca.ServerTLS(t, opts, true)
		s := natsauthtest.Start(t, opts)
		// A nats:// URL: TLS is then the options' doing (tls:// would require it by itself).
		url := strings.Replace(s.ClientURL(), "tls://", "nats://", 1)
		cert, key := ca.ClientCert(t, "alice")
		nc, err := connect(t, url, natsauth.Options{User: "alice", Password: pw, CA: ca.File, Cert: cert, Key: key})
		require.NoError(t, err)
		require.True(t, nc.TLSRequired())
		usesJetStream(t, nc)

		for _, tc := range []struct {
			name string
			o    natsauth.Options
			want string
		}{
			// The client turns TLS on when the server requires it, and then cannot verify it.
			{"no TLS options", natsauth.Options{User: "alice", Password: pw}, "not signed by a CA this client trusts (nats: tls error: tls: failed to verify certificate: x509: certificate signed by unknown authority): give the CA that signed it with --nats-ca"},
			{"no CA", natsauth.Options{User: "alice", Password: pw, TLS: true, Cert: cert, Key: key}, "not signed by a CA this client trusts"},
			{"no client certificate", natsauth.Options{User: "alice", Password: pw, CA: ca.File}, "requires a client certificate"},
			{"certificate of another CA", func() natsauth.Options {
				c, k := natsauthtest.NewCA(t).ClientCert(t, "mallory")
				return natsauth.Options{User: "alice", Password: pw, CA: ca.File, Cert: c, Key: k}
			}(), "refused the client certificate"},
		} {
			t.Run(tc.name, func(t *testing.T) {
				_, err := connect(t, url, tc.o)
				require.Error(t, err)
				d, ok := tc.o.Diagnose(err)
				require.True(t, ok, err)
				t.Log(d)
				require.Equal(t, "NATS TLS failed", d.Problem, d)
				require.Contains(t, d.Detail, tc.want)
			})
		}
	})
}

func TestDiagnoseOtherErrors(t *testing.T) {
	t.Parallel()
	_, ok := natsauth.Options{}.Diagnose(nats.ErrNoServers)
	require.False(t, ok)
	_, ok = natsauth.Options{}.Diagnose(nil)
	require.False(t, ok)

	// TLS 1.3: a server that refuses the client's certificate may just close the connection.
	closed := fmt.Errorf("%w: connection closed by remote after TLS handshake: %w", nats.ErrTLS, io.EOF)
	d, ok := natsauth.Options{CA: "/ca.pem"}.Diagnose(closed)
	require.True(t, ok)
	require.Equal(t, "NATS TLS failed: the server closed the connection after the TLS handshake: it most likely requires a client certificate (nats: tls error: connection closed by remote after TLS handshake: EOF): give --nats-cert and --nats-key", d.String())
	d, ok = natsauth.Options{CA: "/ca.pem", Cert: "/c.pem", Key: "/k.pem"}.Diagnose(closed)
	require.True(t, ok)
	require.Contains(t, d.Detail, "it most likely refused the client certificate /c.pem")
}
