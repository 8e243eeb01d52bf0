package submitcmd

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/natsauth"
)

// NATSEnvPrefix starts the environment variables of the NATS security options, the same the
// worker reads: CONFITURE_NATS_CREDS, ..._NKEY, ..._USER, ..._PASSWORD, ..._PASSWORD_FILE,
// ..._TOKEN, ..._TOKEN_FILE, ..._CA, ..._CERT, ..._KEY and ..._TLS.
const NATSEnvPrefix = "CONFITURE_"

// natsFlags are the NATS security flags that name no secret, in the order a follow command
// repeats them.
var natsFlags = []string{"nats-creds", "nats-nkey", "nats-user", "nats-password-file", "nats-token-file", "nats-ca", "nats-cert", "nats-key", "nats-tls"}

// addNATSFlags declares the NATS security flags into o.
func addNATSFlags(cmd *cobra.Command, o *natsauth.Options) {
	f := cmd.PersistentFlags()
	f.StringVar(&o.Creds, "nats-creds", "", "NATS credentials file: user JWT and NKey seed, as nsc writes it ($CONFITURE_NATS_CREDS)")
	f.StringVar(&o.NKey, "nats-nkey", "", "NATS NKey user seed file ($CONFITURE_NATS_NKEY)")
	f.StringVar(&o.User, "nats-user", "", "NATS user ($CONFITURE_NATS_USER); the password from --nats-password-file or $CONFITURE_NATS_PASSWORD")
	f.StringVar((*string)(&o.Password), "nats-password", "", "NATS password; visible to other users in the process list, prefer $CONFITURE_NATS_PASSWORD or --nats-password-file")
	f.StringVar(&o.PasswordFile, "nats-password-file", "", "file holding the NATS password ($CONFITURE_NATS_PASSWORD_FILE)")
	f.StringVar((*string)(&o.Token), "nats-token", "", "NATS token; visible in the process list, prefer $CONFITURE_NATS_TOKEN or --nats-token-file")
	f.StringVar(&o.TokenFile, "nats-token-file", "", "file holding the NATS token ($CONFITURE_NATS_TOKEN_FILE)")
	f.StringVar(&o.CA, "nats-ca", "", "PEM file of the CA that signed the NATS server's certificate; turns TLS on ($CONFITURE_NATS_CA)")
	f.StringVar(&o.Cert, "nats-cert", "", "PEM client certificate for NATS TLS, with --nats-key ($CONFITURE_NATS_CERT)")
	f.StringVar(&o.Key, "nats-key", "", "PEM private key of --nats-cert ($CONFITURE_NATS_KEY)")
	f.BoolVar(&o.TLS, "nats-tls", false, "require TLS, verified against the system's CAs unless --nats-ca ($CONFITURE_NATS_TLS)")
}

// natsAuth sets s.auth from the environment and the flags (flags first; a method given by
// flags replaces the environment's) and checks it: a bad combination or a file that cannot
// be used is a usage error, before anything is published.
func (s *submitter) natsAuth() error {
	fromEnv, err := natsauth.FromEnv(s.env.getenv, NATSEnvPrefix)
	if err != nil {
		return s.usage("%v", err)
	}
	s.auth = fromEnv.Merge(s.o.nats)
	if err := s.auth.Validate(); err != nil {
		return s.usage("%v", err)
	}
	return nil
}

// refused reports a connection that the server refused (authorization or TLS) and returns
// exit code 1, like any other connection failure.
func (s *submitter) refused(d natsauth.Diagnosis, shown, consequence string) error {
	s.errorf("%s at %s: %s", d.Problem, shown, s.redact(d.Detail))
	if d.Auth {
		fmt.Fprintf(s.stderr, "hint: give the credentials this server expects (--nats-creds, --nats-nkey, --nats-user with $CONFITURE_NATS_PASSWORD, or $CONFITURE_NATS_TOKEN; see 'submit --help'); %s\n", consequence)
	} else {
		fmt.Fprintf(s.stderr, "hint: check --nats-ca, --nats-cert and --nats-key against the server's TLS configuration; %s\n", consequence)
	}
	return exit(ExitFailed)
}

// permissionHint says what a permission refused at publish means.
func (s *submitter) permissionHint(pe *client.PermissionError, target string) {
	if pe.Subject == contract.RequestSubject(target) {
		fmt.Fprintf(s.stderr, "hint: this NATS user may not publish requests for target %s: the server's permissions for it allow other subjects; nothing was published\n", target)
		return
	}
	fmt.Fprintln(s.stderr, "hint: submit needs its NATS user to subscribe to _INBOX.> for JetStream's replies (see docs/SECURITY.md); the request may not have been stored")
}

// natsFlagsShown repeats the NATS security flags given, except a password or token (which the
// follow command takes from the environment again).
func natsFlagsShown(cmd *cobra.Command) []string {
	var parts []string
	for _, name := range natsFlags {
		fl := cmd.Flags().Lookup(name)
		if fl == nil || !fl.Changed {
			continue
		}
		if fl.Value.Type() == "bool" {
			parts = append(parts, "--"+name)
			continue
		}
		parts = append(parts, "--"+name, shellQuote(fl.Value.String()))
	}
	return parts
}
