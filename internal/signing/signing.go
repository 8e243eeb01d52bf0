// Package signing is the worker's policy for signed requests: which targets require a
// signature, which keys may sign for each, and how old a signature may be. Intake asks it about
// every decoded request before anything else looks at the request, and before any connection
// to the target exists.
//
// The signature format and its canonical form are the public contract's (contract.Signature,
// contract.SigningInput); docs/SECURITY.md describes them for clients in other languages.
package signing

import (
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/target"
)

// Defaults of a Policy.
const (
	// DefaultMaxAge is how old a signature may be when its request reaches NATS.
	DefaultMaxAge = 15 * time.Minute
	// MaxClockSkew is how far in the future signed_at may be, for clocks that disagree.
	MaxClockSkew = time.Minute
)

// Policy holds the signature rules of every configured target.
type Policy struct {
	maxAge  time.Duration
	targets map[string]*targetPolicy
}

type targetPolicy struct {
	require bool
	keys    map[string]ed25519.PublicKey
}

// NewPolicy reads the signers of targets. maxAge bounds the age of a signature (0 means
// DefaultMaxAge). A target that requires signatures but lists no signer, a signer without an
// id, a duplicate id or a key that is not an Ed25519 public key is an error.
func NewPolicy(targets []target.Config, maxAge time.Duration) (*Policy, error) {
	if maxAge == 0 {
		maxAge = DefaultMaxAge
	}
	if maxAge < 0 {
		return nil, fmt.Errorf("signature_max_age must be positive, got %s", maxAge)
	}
	p := &Policy{maxAge: maxAge, targets: map[string]*targetPolicy{}}
	for _, t := range targets {
		tp := &targetPolicy{require: t.RequireSigned, keys: map[string]ed25519.PublicKey{}}
		for i, s := range t.Signers {
			if !contract.KeyIDPattern.MatchString(s.ID) {
				return nil, fmt.Errorf("target %q: signers[%d]: id %q must be 1 to 64 letters, digits, '.', '_', '@' or '-', starting with a letter or digit", t.Name, i, s.ID)
			}
			if _, dup := tp.keys[s.ID]; dup {
				return nil, fmt.Errorf("target %q: signer %q is listed twice", t.Name, s.ID)
			}
			pub, err := contract.ParsePublicKey(s.PublicKey)
			if err != nil {
				return nil, fmt.Errorf("target %q: signer %q: public_key: %v", t.Name, s.ID, err)
			}
			tp.keys[s.ID] = pub
		}
		if tp.require && len(tp.keys) == 0 {
			return nil, fmt.Errorf("target %q: require_signed is set but signers is empty: no request could be accepted", t.Name)
		}
		p.targets[t.Name] = tp
	}
	return p, nil
}

// MaxAge is how old a signature may be.
func (p *Policy) MaxAge() time.Duration { return p.maxAge }

// Requires reports whether target accepts only signed requests.
func (p *Policy) Requires(targetName string) bool {
	tp := p.targets[targetName]
	return tp != nil && tp.require
}

// Verify checks the signature of req, decoded from the message data, against the policy of
// req's target; receivedAt is when the request reached NATS (the stream's timestamp), so that a
// redelivery is judged like the first delivery. It returns nil when the target does not
// require a signature and none is present, or when the signature is valid; otherwise a
// *contract.DecodeError with code CodeSignatureRequired, CodeInvalidSignature or
// CodeSignatureExpired. A target with no signers ignores a signature it cannot check.
func (p *Policy) Verify(req *contract.Request, data []byte, receivedAt time.Time) error {
	return p.verify(req.Target, "request", "submit --sign-key FILE --key-id ID", data, req.Signature, receivedAt)
}

// VerifyAction checks the signature of an operator action on target (an API request, decoded
// from data) as Verify checks a request's, by the same rules and signers, at receivedAt.
func (p *Policy) VerifyAction(target string, data []byte, sig *contract.Signature, receivedAt time.Time) error {
	return p.verify(target, "action", "submit run ACTION RUN --sign-key FILE --key-id ID", data, sig, receivedAt)
}

// verify checks sig, the signature of a message of kind what (decoded from data) for target;
// how says how to sign one.
func (p *Policy) verify(target, what, how string, data []byte, sig *contract.Signature, receivedAt time.Time) error {
	tp := p.targets[target]
	if tp == nil || len(tp.keys) == 0 {
		return nil // an unknown target is the checker's to reject
	}
	if sig == nil {
		if !tp.require {
			return nil
		}
		return reject(contract.CodeSignatureRequired,
			"target %q accepts only signed %ss: sign it with a key of the target's signers (%s)", target, what, how)
	}
	pub, ok := tp.keys[sig.KeyID]
	if !ok {
		return reject(contract.CodeInvalidSignature, "key %q is not one of the signers of target %q", sig.KeyID, target)
	}
	if err := contract.VerifySignature(data, sig, pub); err != nil {
		return reject(contract.CodeInvalidSignature,
			"signature by key %q is not valid: %v (the %s was changed after it was signed, or signed with another key)", sig.KeyID, err, what)
	}
	// The times are covered by the signature: check them only once it is authentic.
	signedAt, err := contract.ParseSignatureTime(sig.SignedAt)
	if err != nil {
		return reject(contract.CodeInvalidSignature, "signed_at: %v", err)
	}
	at := func(t time.Time) string { return t.UTC().Format(time.RFC3339) }
	if signedAt.After(receivedAt.Add(MaxClockSkew)) {
		return reject(contract.CodeSignatureExpired,
			"signed_at %s is %s after the "+what+" reached NATS (%s), more than the %s allowed for clock skew",
			at(signedAt), signedAt.Sub(receivedAt).Round(time.Second), at(receivedAt), MaxClockSkew)
	}
	if age := receivedAt.Sub(signedAt); age > p.maxAge {
		return reject(contract.CodeSignatureExpired,
			"signature expired: signed at %s, %s before the "+what+" reached NATS, over the signature_max_age of %s; sign it again",
			at(signedAt), age.Round(time.Second), p.maxAge)
	}
	if sig.ExpiresAt != "" {
		expiresAt, err := contract.ParseSignatureTime(sig.ExpiresAt)
		if err != nil {
			return reject(contract.CodeInvalidSignature, "expires_at: %v", err)
		}
		if !expiresAt.After(signedAt) {
			return reject(contract.CodeInvalidSignature, "expires_at %s is not after signed_at %s", at(expiresAt), at(signedAt))
		}
		if receivedAt.After(expiresAt) {
			return reject(contract.CodeSignatureExpired,
				"signature expired at %s (expires_at), before the "+what+" reached NATS (%s); sign it again", at(expiresAt), at(receivedAt))
		}
	}
	return nil
}

func reject(code, format string, args ...any) error {
	return &contract.DecodeError{Code: code, Message: fmt.Sprintf(format, args...)}
}
