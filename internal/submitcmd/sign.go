package submitcmd

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

// Environment variables that default --sign-key and --key-id.
const (
	SignKeyEnv   = "CONFITURE_SIGN_KEY"
	SignKeyIDEnv = "CONFITURE_SIGN_KEY_ID"
)

// signOptions are the request-signing flags.
type signOptions struct {
	keyFile string
	keyID   string
	expires time.Duration

	key ed25519.PrivateKey // loaded from keyFile
}

const signingHelp = `With --sign-key FILE --key-id ID, submit signs the request (Ed25519, over its canonical
form; see docs/SECURITY.md) with the private key in FILE (PKCS#8 PEM, as written by
'submit keygen' or 'openssl genpkey -algorithm ed25519'). A target whose worker configuration
sets require_signed accepts only requests signed by one of its signers, listed by key id; the
signature is valid for the worker's signature_max_age (15 minutes by default), or until
--sign-expires.`

// addSigningFlags declares the signing flags into o.
func addSigningFlags(cmd *cobra.Command, o *signOptions) {
	f := cmd.Flags()
	f.StringVar(&o.keyFile, "sign-key", "", "sign the request with the Ed25519 private key in this PKCS#8 PEM file ($"+SignKeyEnv+")")
	f.StringVar(&o.keyID, "key-id", "", "with --sign-key: the key's id in the target's signers ($"+SignKeyIDEnv+")")
	f.DurationVar(&o.expires, "sign-expires", 0, "with --sign-key: the signature expires this long after signing (default: only the worker's signature_max_age)")
}

// signingSetup reads the signing flags (then their variables) and loads the key: a missing
// key id, an unreadable file or a key that is not Ed25519 is a usage error, before anything is
// published.
func (s *submitter) signingSetup() error {
	o := &s.o.sign
	if o.keyFile == "" {
		o.keyFile = s.env.getenv(SignKeyEnv)
	}
	if o.keyID == "" {
		o.keyID = s.env.getenv(SignKeyIDEnv)
	}
	if o.keyFile == "" {
		switch {
		case s.cmd.Flags().Changed("key-id"):
			return s.usage("--key-id names the key of --sign-key: add --sign-key FILE, or drop --key-id")
		case s.cmd.Flags().Changed("sign-expires"):
			return s.usage("--sign-expires applies to a signed request: add --sign-key FILE --key-id ID, or drop it")
		}
		return nil
	}
	if o.keyID == "" {
		return s.usage("--sign-key needs --key-id (or $%s): the id the target's signers list the key under", SignKeyIDEnv)
	}
	if !contract.KeyIDPattern.MatchString(o.keyID) {
		return s.usage("--key-id %q must be 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", o.keyID)
	}
	if o.expires < 0 {
		return s.usage("--sign-expires must be positive, got %s", o.expires)
	}
	data, err := os.ReadFile(o.keyFile)
	if err != nil {
		return s.usage("--sign-key: %v", err)
	}
	key, err := contract.ParsePrivateKey(data)
	if err != nil {
		return s.usage("--sign-key %s: %v", o.keyFile, err)
	}
	if fi, err := os.Stat(o.keyFile); err == nil && fi.Mode().Perm()&0o077 != 0 {
		fmt.Fprintf(s.stderr, "warning: the signing key %s is readable by other users (mode %v): chmod 600 it\n", o.keyFile, fi.Mode().Perm())
	}
	o.key = key
	return nil
}

// encode marshals the request, signing it when a key is set.
func (s *submitter) encode(req *contract.Request) ([]byte, error) {
	o := &s.o.sign
	if o.key == nil {
		return json.Marshal(req)
	}
	now := s.env.now()
	var expires time.Time
	if o.expires > 0 {
		expires = now.Add(o.expires)
	}
	return contract.SignRequest(req, o.key, o.keyID, now, expires)
}

// signFlagsShown are the signing flags to repeat in a follow command.
func signFlagsShown(cmd *cobra.Command, o *signOptions) []string {
	var out []string
	if cmd.Flags().Changed("sign-key") {
		out = append(out, "--sign-key", shellQuote(o.keyFile))
	}
	if cmd.Flags().Changed("key-id") {
		out = append(out, "--key-id", shellQuote(o.keyID))
	}
	return out
}

// keygenCommand is `submit keygen`: it writes a new Ed25519 private key and prints its public
// key, ready for the worker's configuration.
func keygenCommand(stdout, stderr io.Writer) *cobra.Command {
	var out, keyID, targetName string
	cmd := &cobra.Command{
		Use:   "keygen --out FILE",
		Short: "Write a new Ed25519 key for signing requests, and print its public key",
		Long: `Writes a new Ed25519 private key to FILE (PKCS#8 PEM, mode 0600; the same format as
'openssl genpkey -algorithm ed25519 -out FILE') and prints its public key, with the worker
configuration that lets it sign requests for a target. Keep FILE secret: whoever holds it can
change the target. 'openssl pkey -in FILE -pubout' prints the public key again.`,
		Example:       "  submit keygen --out deploy.pem --key-id ci --target app",
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if out == "" {
				return errors.New("--out FILE is required: where to write the private key")
			}
			if !contract.KeyIDPattern.MatchString(keyID) {
				return fmt.Errorf("--key-id %q must be 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", keyID)
			}
			pub, priv, err := ed25519.GenerateKey(rand.Reader)
			if err != nil {
				return err
			}
			pemData, err := contract.MarshalPrivateKey(priv)
			if err != nil {
				return err
			}
			pubText, err := contract.MarshalPublicKey(pub)
			if err != nil {
				return err
			}
			f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
			if errors.Is(err, fs.ErrExist) {
				return fmt.Errorf("%s exists already: keygen never overwrites a key", out)
			}
			if err != nil {
				return err
			}
			if _, err := f.Write(pemData); err != nil {
				f.Close()
				return err
			}
			if err := f.Close(); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "wrote the private key to %s (keep it secret)\n", out)
			fmt.Fprintf(stdout, "public key: %s\n\n", pubText)
			fmt.Fprintf(stdout, "worker configuration (YAML):\n  targets:\n    - name: %s\n      require_signed: true\n      signers:\n        - id: %s\n          public_key: %s\n", targetName, keyID, pubText)
			fmt.Fprintf(stdout, "or in its environment:\n  CONFITURE_SIGNERS_%s=%s=%s\n\n", strings.ToUpper(targetName), keyID, pubText)
			fmt.Fprintf(stdout, "sign with: submit DIR --target %s --sign-key %s --key-id %s\n", targetName, shellQuote(out), keyID)
			return nil
		},
	}
	cmd.Flags().StringVar(&out, "out", "", "file to write the private key to (it must not exist)")
	cmd.Flags().StringVar(&keyID, "key-id", "ci", "id of the key in the printed configuration")
	cmd.Flags().StringVar(&targetName, "target", "default", "target in the printed configuration")
	cmd.SetOut(stdout)
	cmd.SetErr(stderr)
	return cmd
}
