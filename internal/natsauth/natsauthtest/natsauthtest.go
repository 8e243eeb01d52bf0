// Package natsauthtest starts in-process NATS servers that require authorization, for tests:
// users with passwords and permissions, NKey users, a token, operator mode with credentials
// files, and TLS with a CA and certificates generated at test time (nothing is checked in).
package natsauthtest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nkeys"
)

// Start starts a NATS server with JetStream on a free loopback port, configured by opts (nil:
// no authorization), and shuts it down when the test ends. It returns the server; its client
// URL is s.ClientURL().
func Start(t testing.TB, opts *server.Options) *server.Server {
	t.Helper()
	if opts == nil {
		opts = &server.Options{}
	}
	opts.Host = "127.0.0.1"
	opts.Port = -1
	opts.JetStream = true
	if opts.StoreDir == "" {
		opts.StoreDir = t.TempDir()
	}
	opts.NoSigs = true
	if os.Getenv("CONFITURE_TEST_NATS_LOG") == "" {
		opts.NoLog = true
	}
	s, err := server.NewServer(opts)
	if err != nil {
		t.Fatalf("natsauthtest: %v", err)
	}
	if !opts.NoLog {
		s.ConfigureLogger()
	}
	go s.Start()
	if !s.ReadyForConnections(15 * time.Second) {
		s.Shutdown()
		t.Fatal("natsauthtest: server not ready after 15s")
	}
	t.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// Perms builds permissions: the subjects a user may publish to and subscribe to.
func Perms(pub, sub []string) *server.Permissions {
	return &server.Permissions{
		Publish:   &server.SubjectPermission{Allow: pub},
		Subscribe: &server.SubjectPermission{Allow: sub},
	}
}

// WriteFile writes content to a fresh file named name and returns its path.
func WriteFile(t testing.TB, name string, content []byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// NKeyUser creates an NKey user: the file of its seed, and its public key for the server.
func NKeyUser(t testing.TB) (seedFile, public string) {
	t.Helper()
	kp, err := nkeys.CreateUser()
	must(t, err)
	seed, err := kp.Seed()
	must(t, err)
	public, err = kp.PublicKey()
	must(t, err)
	return WriteFile(t, "user.nk", append(seed, '\n')), public
}

// Operator is an operator-mode (JWT) setup: one account with JetStream, and users whose
// credentials files it signs.
type Operator struct {
	operator nkeys.KeyPair
	account  nkeys.KeyPair
	claims   *jwt.OperatorClaims
	resolver *server.MemAccResolver
	system   string
}

// NewOperator creates an operator, a system account and an account with JetStream.
func NewOperator(t testing.TB) *Operator {
	t.Helper()
	okp, err := nkeys.CreateOperator()
	must(t, err)
	opub, err := okp.PublicKey()
	must(t, err)
	o := &Operator{operator: okp, claims: jwt.NewOperatorClaims(opub), resolver: &server.MemAccResolver{}}
	o.claims.Name = "confiture-test"

	skp, err := nkeys.CreateAccount()
	must(t, err)
	o.system, err = skp.PublicKey()
	must(t, err)
	sys := jwt.NewAccountClaims(o.system)
	sys.Name = "SYS"
	sysJWT, err := sys.Encode(okp)
	must(t, err)
	must(t, o.resolver.Store(o.system, sysJWT))

	o.account, err = nkeys.CreateAccount()
	must(t, err)
	apub, err := o.account.PublicKey()
	must(t, err)
	acc := jwt.NewAccountClaims(apub)
	acc.Name = "CONFITURE"
	acc.Limits.JetStreamLimits = jwt.JetStreamLimits{MemoryStorage: -1, DiskStorage: -1, Streams: -1, Consumer: -1}
	accJWT, err := acc.Encode(okp)
	must(t, err)
	must(t, o.resolver.Store(apub, accJWT))
	return o
}

// Configure makes opts trust the operator and resolve its accounts.
func (o *Operator) Configure(opts *server.Options) {
	opts.TrustedOperators = []*jwt.OperatorClaims{o.claims}
	opts.AccountResolver = o.resolver
	opts.SystemAccount = o.system
}

// Creds writes the credentials file of a new user of the account, allowed to publish to pub
// and subscribe to sub (nil: anything), and returns its path.
func (o *Operator) Creds(t testing.TB, name string, pub, sub []string) string {
	t.Helper()
	ukp, err := nkeys.CreateUser()
	must(t, err)
	upub, err := ukp.PublicKey()
	must(t, err)
	seed, err := ukp.Seed()
	must(t, err)
	uc := jwt.NewUserClaims(upub)
	uc.Name = name
	uc.Pub.Allow.Add(pub...)
	uc.Sub.Allow.Add(sub...)
	userJWT, err := uc.Encode(o.account)
	must(t, err)
	creds, err := jwt.FormatUserConfig(userJWT, seed)
	must(t, err)
	return WriteFile(t, name+".creds", creds)
}

// CA is a certificate authority made for one test.
type CA struct {
	// File is the CA certificate in PEM, for a client's CA option.
	File string
	Pool *x509.CertPool
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	dir  string
}

// NewCA creates a self-signed CA.
func NewCA(t testing.TB) *CA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber:          serial(t),
		Subject:               pkix.Name{CommonName: "confiture test CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	must(t, err)
	cert, err := x509.ParseCertificate(der)
	must(t, err)
	ca := &CA{cert: cert, key: key, dir: t.TempDir(), Pool: x509.NewCertPool()}
	ca.Pool.AddCert(cert)
	ca.File = filepath.Join(ca.dir, "ca.pem")
	must(t, os.WriteFile(ca.File, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	return ca
}

// issue signs a certificate for name (a server's 127.0.0.1 and localhost, or a client).
func (ca *CA) issue(t testing.TB, name string, server bool) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: serial(t),
		Subject:      pkix.Name{CommonName: name},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	if server {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.ParseIP("127.0.0.1")}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	must(t, err)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// ServerTLS configures opts for TLS with a certificate signed by the CA; with verify, clients
// must present a certificate the CA signed.
func (ca *CA) ServerTLS(t testing.TB, opts *server.Options, verify bool) {
	t.Helper()
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{ca.issue(t, "confiture test server", true)},
	}
	if verify {
		cfg.ClientCAs = ca.Pool
		cfg.ClientAuth = tls.RequireAndVerifyClientCert
	}
	opts.TLS = true
	opts.TLSVerify = verify
	opts.TLSConfig = cfg
	opts.TLSTimeout = 5
}

// ClientCert writes a client certificate signed by the CA and its key, and returns their paths.
func (ca *CA) ClientCert(t testing.TB, name string) (certFile, keyFile string) {
	t.Helper()
	c := ca.issue(t, name, false)
	keyDER, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	must(t, err)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
	must(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]}), 0o600))
	must(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}), 0o600))
	return certFile, keyFile
}

func serial(t testing.TB) *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	must(t, err)
	return n
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("natsauthtest: %v", err)
	}
}
