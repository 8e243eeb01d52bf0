// Package natsauth holds what secures a connection to a NATS server: how the client
// authenticates (a credentials file, an NKey seed, a user and password, or a token) and TLS (the
// CA that signed the server's certificate, a client certificate). The worker and submit share it.
//
// Options check themselves with errors that name the option at fault, turn into nats.Options,
// and never show a secret: passwords and tokens are Secrets, which print and log as "xxxxx", and
// no error quotes one. File paths are not secret and do show.
package natsauth

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go"
)

// Secret is a password or a token. It prints, formats and logs as "xxxxx" (or "" when empty);
// string(s) is the value.
type Secret string

const redacted = "xxxxx"

// String hides the value.
func (s Secret) String() string {
	if s == "" {
		return ""
	}
	return redacted
}

// GoString hides the value from %#v.
func (s Secret) GoString() string { return strconv.Quote(s.String()) }

// LogValue hides the value from log/slog.
func (s Secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// MarshalText hides the value from encoders (JSON, YAML) that write the options out.
func (s Secret) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText takes the value as it is (MarshalText alone would make decoders expect
// the redacted form).
func (s *Secret) UnmarshalText(b []byte) error {
	*s = Secret(b)
	return nil
}

// Authentication methods, as Method reports them.
const (
	MethodNone  = ""
	MethodCreds = "creds"
	MethodNKey  = "nkey"
	MethodUser  = "user"
	MethodToken = "token"
)

// Options secure a NATS connection. The zero value connects without credentials and, unless
// the URL says tls://, without TLS. At most one authentication method may be set.
type Options struct {
	// Creds is a credentials file (a user JWT and its NKey seed, as nsc writes it), for a
	// server in operator (decentralized JWT) mode.
	Creds string `yaml:"creds"`
	// NKey is a file holding an NKey user seed ("SU..."), for a server with an nkey user.
	NKey string `yaml:"nkey"`
	// User and a password (Password or PasswordFile), for a server with users.
	User string `yaml:"user"`
	// Password of User. Prefer PasswordFile or the environment to a file that others read.
	Password Secret `yaml:"password"`
	// PasswordFile holds the password (one line; a trailing newline is dropped).
	PasswordFile string `yaml:"password_file"`
	// Token (Token or TokenFile), for a server with a token.
	Token Secret `yaml:"token"`
	// TokenFile holds the token (one line; a trailing newline is dropped).
	TokenFile string `yaml:"token_file"`
	// CA is a PEM file of the certificates that may sign the server's certificate, instead of
	// the system's. Setting it turns TLS on.
	CA string `yaml:"ca"`
	// Cert and Key are a PEM client certificate and its private key, for a server that
	// verifies clients (tls { verify: true }). Setting them turns TLS on.
	Cert string `yaml:"cert"`
	Key  string `yaml:"key"`
	// TLS requires TLS, verified against the system's CAs unless CA says otherwise. A tls://
	// URL, CA, or Cert require it too.
	TLS bool `yaml:"tls"`
}

// Method is the authentication method the options choose: MethodCreds, MethodNKey,
// MethodUser, MethodToken or MethodNone. With more than one set, it is the first of these;
// Validate reports the clash.
func (o Options) Method() string {
	m := o.methods()
	if len(m) == 0 {
		return MethodNone
	}
	return m[0]
}

func (o Options) methods() []string {
	var m []string
	if o.Creds != "" {
		m = append(m, MethodCreds)
	}
	if o.NKey != "" {
		m = append(m, MethodNKey)
	}
	if o.User != "" || o.Password != "" || o.PasswordFile != "" {
		m = append(m, MethodUser)
	}
	if o.Token != "" || o.TokenFile != "" {
		m = append(m, MethodToken)
	}
	return m
}

var methodNames = map[string]string{
	MethodCreds: "a credentials file", MethodNKey: "an NKey seed", MethodUser: "a user and password",
	MethodToken: "a token",
}

// WantsTLS reports whether the options turn TLS on.
func (o Options) WantsTLS() bool { return o.TLS || o.CA != "" || o.Cert != "" || o.Key != "" }

// IsZero reports whether no option is set.
func (o Options) IsZero() bool { return o == Options{} }

// Merge returns o overridden by the options set in over, a layer of higher precedence (the
// environment over a file, flags over the environment). When over chooses another
// authentication method than o, o's method is dropped rather than combined with it; TLS
// options override one by one.
func (o Options) Merge(over Options) Options {
	if m := over.Method(); m != MethodNone && m != o.Method() {
		o.Creds, o.NKey, o.User, o.Password, o.PasswordFile, o.Token, o.TokenFile = "", "", "", "", "", "", ""
	}
	set := func(dst *string, v string) {
		if v != "" {
			*dst = v
		}
	}
	set(&o.Creds, over.Creds)
	set(&o.NKey, over.NKey)
	set(&o.User, over.User)
	if over.Password != "" || over.PasswordFile != "" { // one source of the password
		o.Password, o.PasswordFile = over.Password, over.PasswordFile
	}
	if over.Token != "" || over.TokenFile != "" {
		o.Token, o.TokenFile = over.Token, over.TokenFile
	}
	set(&o.CA, over.CA)
	set(&o.Cert, over.Cert)
	set(&o.Key, over.Key)
	o.TLS = o.TLS || over.TLS
	return o
}

// Environment variables FromEnv reads, after a prefix such as "CONFITURE_".
const (
	EnvCreds        = "NATS_CREDS"
	EnvNKey         = "NATS_NKEY"
	EnvUser         = "NATS_USER"
	EnvPassword     = "NATS_PASSWORD"
	EnvPasswordFile = "NATS_PASSWORD_FILE"
	EnvToken        = "NATS_TOKEN"
	EnvTokenFile    = "NATS_TOKEN_FILE"
	EnvCA           = "NATS_CA"
	EnvCert         = "NATS_CERT"
	EnvKey          = "NATS_KEY"
	EnvTLS          = "NATS_TLS"
)

// FromEnv reads the options from prefix+NATS_CREDS, NATS_NKEY, NATS_USER, NATS_PASSWORD,
// NATS_PASSWORD_FILE, NATS_TOKEN, NATS_TOKEN_FILE, NATS_CA, NATS_CERT, NATS_KEY and NATS_TLS
// (true or false) through getenv.
func FromEnv(getenv func(string) string, prefix string) (Options, error) {
	var o Options
	for k, p := range map[string]*string{
		EnvCreds: &o.Creds, EnvNKey: &o.NKey, EnvUser: &o.User, EnvPasswordFile: &o.PasswordFile,
		EnvTokenFile: &o.TokenFile, EnvCA: &o.CA, EnvCert: &o.Cert, EnvKey: &o.Key,
	} {
		*p = getenv(prefix + k)
	}
	o.Password = Secret(getenv(prefix + EnvPassword))
	o.Token = Secret(getenv(prefix + EnvToken))
	if v := getenv(prefix + EnvTLS); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			return o, fmt.Errorf("%s%s: %q is not true or false", prefix, EnvTLS, v)
		}
		o.TLS = b
	}
	return o, nil
}

// Validate checks that at most one authentication method is set, that it is complete, and
// that every file named can be read and holds what it should. Its errors name the option and
// the file, never a secret.
func (o Options) Validate() error {
	_, err := o.build()
	return err
}

// NATSOptions validates the options and returns them as nats.Options.
func (o Options) NATSOptions() ([]nats.Option, error) { return o.build() }

func (o Options) build() ([]nats.Option, error) {
	if m := o.methods(); len(m) > 1 {
		names := make([]string, len(m))
		for i, x := range m {
			names[i] = methodNames[x]
		}
		return nil, fmt.Errorf("NATS authentication: choose one method, got %s", strings.Join(names, " and "))
	}
	var opts []nats.Option
	switch o.Method() {
	case MethodCreds:
		if err := checkCreds(o.Creds); err != nil {
			return nil, err
		}
		opts = append(opts, nats.UserCredentials(o.Creds))
	case MethodNKey:
		opt, err := nats.NkeyOptionFromSeed(o.NKey)
		if err != nil {
			return nil, fmt.Errorf("NATS NKey seed file %s: %s", o.NKey, fileError(err, "no NKey user seed (SU...) in it"))
		}
		opts = append(opts, opt)
	case MethodUser:
		pw, err := secret("password", o.Password, o.PasswordFile)
		if err != nil {
			return nil, err
		}
		switch {
		case o.User == "":
			return nil, errors.New("NATS authentication: a password without a user: set the user too")
		case pw == "":
			return nil, fmt.Errorf("NATS authentication: user %q has no password: give it in the environment or a password file", o.User)
		}
		opts = append(opts, nats.UserInfo(o.User, pw))
	case MethodToken:
		tok, err := secret("token", o.Token, o.TokenFile)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Token(tok))
	}
	if o.WantsTLS() {
		cfg, err := o.tlsConfig()
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(cfg))
	}
	return opts, nil
}

// secret returns the value of a password or token given directly or in a file, not both.
func secret(what string, direct Secret, file string) (string, error) {
	if direct != "" && file != "" {
		return "", fmt.Errorf("NATS authentication: the %s is given twice, directly and in the file %s: keep one", what, file)
	}
	if file == "" {
		return string(direct), nil
	}
	b, err := os.ReadFile(file)
	if err != nil {
		return "", fmt.Errorf("NATS %s file %s: %s", what, file, fileError(err, ""))
	}
	v := strings.TrimRight(string(b), "\r\n")
	if v == "" {
		return "", fmt.Errorf("NATS %s file %s is empty", what, file)
	}
	if strings.ContainsAny(v, "\r\n") {
		return "", fmt.Errorf("NATS %s file %s has more than one line", what, file)
	}
	return v, nil
}

func checkCreds(file string) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("NATS credentials file %s: %s", file, fileError(err, ""))
	}
	defer clear(b)
	if !bytes.Contains(b, []byte("BEGIN NATS USER JWT")) || !bytes.Contains(b, []byte("NKEY SEED")) {
		return fmt.Errorf("NATS credentials file %s: not a credentials file (it needs a NATS USER JWT block and a USER NKEY SEED block, as nsc writes them)", file)
	}
	return nil
}

// fileError says why a file could not be used, without quoting its content. otherwise
// replaces an error that is not about reading the file (when not empty).
func fileError(err error, otherwise string) string {
	switch {
	case errors.Is(err, os.ErrNotExist):
		return "no such file"
	case errors.Is(err, os.ErrPermission):
		return "permission denied"
	}
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err.Error()
	}
	if otherwise != "" {
		return otherwise
	}
	return err.Error()
}

func (o Options) tlsConfig() (*tls.Config, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if o.CA != "" {
		pem, err := os.ReadFile(o.CA)
		if err != nil {
			return nil, fmt.Errorf("NATS TLS CA file %s: %s", o.CA, fileError(err, ""))
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("NATS TLS CA file %s: no PEM certificate in it", o.CA)
		}
		cfg.RootCAs = pool
	}
	switch {
	case o.Cert != "" && o.Key != "":
		cert, err := tls.LoadX509KeyPair(o.Cert, o.Key)
		if err != nil {
			return nil, fmt.Errorf("NATS TLS client certificate %s and key %s: %s", o.Cert, o.Key, fileError(err, ""))
		}
		cfg.Certificates = []tls.Certificate{cert}
	case o.Cert != "":
		return nil, fmt.Errorf("NATS TLS client certificate %s has no key: give the key file too", o.Cert)
	case o.Key != "":
		return nil, fmt.Errorf("NATS TLS key %s has no certificate: give the certificate file too", o.Key)
	}
	return cfg, nil
}

// Describe names the credentials for a message, without a secret: `user "alice"`, `the
// credentials file /etc/x.creds`, `the NKey seed file ...`, `a token`, or `no credentials`.
func (o Options) Describe() string {
	switch o.Method() {
	case MethodCreds:
		return "the credentials file " + o.Creds
	case MethodNKey:
		return "the NKey seed file " + o.NKey
	case MethodUser:
		return fmt.Sprintf("user %q", o.User)
	case MethodToken:
		return "a token"
	}
	return "no credentials"
}

// LogValue shows the options in logs: files and the user as they are, a password or token as
// "xxxxx" when set, unset options left out.
func (o Options) LogValue() slog.Value {
	var attrs []slog.Attr
	add := func(k, v string) {
		if v != "" {
			attrs = append(attrs, slog.String(k, v))
		}
	}
	add("auth", o.Method())
	add("creds", o.Creds)
	add("nkey", o.NKey)
	add("user", o.User)
	add("password", o.Password.String())
	add("password_file", o.PasswordFile)
	add("token", o.Token.String())
	add("token_file", o.TokenFile)
	add("ca", o.CA)
	add("cert", o.Cert)
	add("key", o.Key)
	if o.WantsTLS() {
		attrs = append(attrs, slog.Bool("tls", true))
	}
	return slog.GroupValue(attrs...)
}

// Diagnosis names the cause of a failed connection.
type Diagnosis struct {
	// Problem is a heading: "NATS authorization failed" or "NATS TLS failed".
	Problem string
	// Detail says what the server refused and what to give it.
	Detail string
	// Auth is set when the server refused the credentials.
	Auth bool
}

// Diagnose names the cause of a connection error when it is about authorization or TLS, in
// words an operator can act on; ok is false for any other error. Options are named by the
// flags both commands take (--nats-user, --nats-ca, ...).
func (o Options) Diagnose(err error) (d Diagnosis, ok bool) {
	if err == nil {
		return d, false
	}
	msg := err.Error()
	lower := strings.ToLower(msg)
	auth := func(detail string) (Diagnosis, bool) {
		return Diagnosis{Problem: "NATS authorization failed", Detail: detail, Auth: true}, true
	}
	tlsFailed := func(detail string) (Diagnosis, bool) {
		return Diagnosis{Problem: "NATS TLS failed", Detail: detail}, true
	}
	switch {
	case errors.Is(err, nats.ErrAuthorization) || strings.Contains(lower, "authorization violation"):
		if o.Method() == MethodNone {
			return auth("the server requires credentials and none were given (" + msg + "): give --nats-creds, --nats-nkey, --nats-user with a password, or a token")
		}
		return auth("the server refused " + o.Describe() + " (" + msg + ")")
	case errors.Is(err, nats.ErrAuthExpired):
		return auth("the server says the credentials of " + o.Describe() + " have expired (" + msg + ")")
	case errors.Is(err, nats.ErrAuthRevoked):
		return auth("the server says the credentials of " + o.Describe() + " were revoked (" + msg + ")")
	case errors.Is(err, nats.ErrSecureConnRequired):
		return tlsFailed("the server requires TLS (" + msg + "): use a tls:// URL, or give --nats-ca (or --nats-tls)")
	case errors.Is(err, nats.ErrSecureConnWanted):
		return tlsFailed("TLS was asked for but the server does not offer it (" + msg + ")")
	}
	var unknownCA x509.UnknownAuthorityError
	var hostname x509.HostnameError
	var invalid x509.CertificateInvalidError
	switch {
	case errors.As(err, &unknownCA) || strings.Contains(lower, "certificate signed by unknown authority"):
		return tlsFailed("the server's certificate is not signed by a CA this client trusts (" + msg + "): give the CA that signed it with --nats-ca")
	case errors.As(err, &hostname) || strings.Contains(lower, "certificate is valid for"):
		return tlsFailed("the server's certificate does not name the host connected to (" + msg + ")")
	case errors.As(err, &invalid):
		return tlsFailed("the server's certificate is not valid (" + msg + ")")
	case strings.Contains(lower, "closed by remote after tls handshake"):
		// TLS 1.3: the server checks the client's certificate after the client has finished
		// its side of the handshake, so a refusal can arrive as a closed connection.
		if o.Cert == "" {
			return tlsFailed("the server closed the connection after the TLS handshake: it most likely requires a client certificate (" + msg + "): give --nats-cert and --nats-key")
		}
		return tlsFailed("the server closed the connection after the TLS handshake: it most likely refused the client certificate " + o.Cert + " (" + msg + ")")
	case strings.Contains(lower, "certificate required") || strings.Contains(lower, "bad certificate") ||
		strings.Contains(lower, "unknown certificate authority") || strings.Contains(lower, "expired certificate"):
		if o.Cert == "" {
			return tlsFailed("the server requires a client certificate (" + msg + "): give --nats-cert and --nats-key")
		}
		return tlsFailed("the server refused the client certificate " + o.Cert + " (" + msg + ")")
	case strings.Contains(lower, "tls: ") || strings.Contains(lower, "x509: "):
		return tlsFailed(msg)
	}
	return d, false
}

// String formats d as "Problem: Detail".
func (d Diagnosis) String() string { return d.Problem + ": " + d.Detail }
