package contract

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"
)

// SignatureAlgEd25519 is the only signature algorithm of confiture.request/v1.
const SignatureAlgEd25519 = "ed25519"

// Signature is the "signature" object of a signed request: an Ed25519 signature, by the key
// KeyID names, over SigningInput of the request (its canonical form without Sig). See
// schemas/request.v1.json and docs/SECURITY.md.
type Signature struct {
	// KeyID names the key in the target's allow-list (the worker's targets[].signers[].id).
	KeyID string `json:"key_id"`
	// Alg is SignatureAlgEd25519.
	Alg string `json:"alg"`
	// SignedAt is when the request was signed, RFC 3339 with a time zone.
	SignedAt string `json:"signed_at"`
	// ExpiresAt, optional, is when the request stops being valid, RFC 3339 with a time zone.
	ExpiresAt string `json:"expires_at,omitempty"`
	// Sig is the 64-byte Ed25519 signature in standard base64 with padding (88 characters).
	Sig string `json:"sig"`
}

// KeyIDPattern is what a signer's key id looks like: 1 to 64 letters, digits, '.', '_', '@' or
// '-', starting with a letter or digit.
var KeyIDPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$`)

// SignRequest signs req with key under keyID: it sets req.Signature (signed_at = signedAt in
// UTC, whole seconds; expires_at = expiresAt when it is not zero) and returns the message to
// publish.
func SignRequest(req *Request, key ed25519.PrivateKey, keyID string, signedAt, expiresAt time.Time) ([]byte, error) {
	r := *req
	sig, data, err := signMessage(key, keyID, signedAt, expiresAt, func(sig *Signature) ([]byte, error) {
		r.Signature = sig
		return json.Marshal(&r)
	})
	if err != nil {
		return nil, fmt.Errorf("sign request: %w", err)
	}
	req.Signature = sig
	return data, nil
}

// SignAPIRequest signs an API request (an operator action) as SignRequest signs a migration
// request; r.Target must name the target, so that the signature holds for that target only.
func SignAPIRequest(r *APIRequest, key ed25519.PrivateKey, keyID string, signedAt, expiresAt time.Time) ([]byte, error) {
	if r.Target == "" {
		return nil, errors.New("sign action: name its target")
	}
	c := *r
	sig, data, err := signMessage(key, keyID, signedAt, expiresAt, func(sig *Signature) ([]byte, error) {
		c.Signature = sig
		return json.Marshal(&c)
	})
	if err != nil {
		return nil, fmt.Errorf("sign action: %w", err)
	}
	r.Signature = sig
	return data, nil
}

// signMessage builds the signature of the message that encode writes with it: encode is called
// with the signature without its sig (the signing input), then with it (the message).
func signMessage(key ed25519.PrivateKey, keyID string, signedAt, expiresAt time.Time, encode func(*Signature) ([]byte, error)) (*Signature, []byte, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, nil, errors.New("not an Ed25519 private key")
	}
	if !KeyIDPattern.MatchString(keyID) {
		return nil, nil, fmt.Errorf("key id %q must match %s", keyID, KeyIDPattern)
	}
	sig := &Signature{KeyID: keyID, Alg: SignatureAlgEd25519, SignedAt: signedAt.UTC().Truncate(time.Second).Format(time.RFC3339)}
	if !expiresAt.IsZero() {
		sig.ExpiresAt = expiresAt.UTC().Truncate(time.Second).Format(time.RFC3339)
	}
	unsigned, err := encode(sig)
	if err != nil {
		return nil, nil, err
	}
	input, err := SigningInput(unsigned)
	if err != nil {
		return nil, nil, err
	}
	sig.Sig = base64.StdEncoding.EncodeToString(ed25519.Sign(key, input))
	data, err := encode(sig)
	return sig, data, err
}

// VerifySignature checks that the request message data carries a signature (the decoded
// sig, its "signature" object) that pub made over SigningInput(data). It checks neither the
// key id nor the times: that is the verifier's policy.
func VerifySignature(data []byte, sig *Signature, pub ed25519.PublicKey) error {
	if sig == nil {
		return errors.New("the request is not signed")
	}
	if sig.Alg != SignatureAlgEd25519 {
		return fmt.Errorf("signature algorithm %s is not supported (want %q)", quote(sig.Alg, 20), SignatureAlgEd25519)
	}
	raw, err := base64.StdEncoding.DecodeString(sig.Sig)
	if err != nil || len(raw) != ed25519.SignatureSize {
		return errors.New("sig is not a 64-byte signature in base64")
	}
	if len(pub) != ed25519.PublicKeySize {
		return errors.New("not an Ed25519 public key")
	}
	input, err := SigningInput(data)
	if err != nil {
		return fmt.Errorf("the request has no canonical form: %w", err)
	}
	if !ed25519.Verify(pub, input, raw) {
		return errors.New("the signature does not match the request")
	}
	return nil
}

// ParseSignatureTime reads signed_at or expires_at: RFC 3339 with a time zone.
func ParseSignatureTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%s is not an RFC 3339 time (like 2024-06-01T12:00:00Z)", quote(s, 40))
	}
	return t, nil
}

// ParsePrivateKey reads an Ed25519 private key in PEM-encoded PKCS#8 ("-----BEGIN PRIVATE
// KEY-----"), as written by `openssl genpkey -algorithm ed25519` or `submit keygen`.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	block, _ := pem.Decode(data)
	if block == nil {
		return nil, errors.New("no PEM block: want an Ed25519 private key in PKCS#8 PEM (openssl genpkey -algorithm ed25519)")
	}
	if block.Type != "PRIVATE KEY" {
		return nil, fmt.Errorf("PEM block %q: want \"PRIVATE KEY\" (PKCS#8), as written by openssl genpkey -algorithm ed25519", block.Type)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("PKCS#8: %v", err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("the key is a %T, not an Ed25519 key", k)
	}
	return priv, nil
}

// MarshalPrivateKey writes priv as PEM-encoded PKCS#8, the format ParsePrivateKey reads.
func MarshalPrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParsePublicKey reads an Ed25519 public key as its X.509 SubjectPublicKeyInfo: either the PEM
// block ("-----BEGIN PUBLIC KEY-----", from `openssl pkey -pubout`) or the base64 between its
// two marker lines (MCowBQYDK2VwAyEA followed by 44 more characters), as `submit keygen` prints.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	var der []byte
	if strings.HasPrefix(s, "-----") {
		block, _ := pem.Decode([]byte(s))
		if block == nil || block.Type != "PUBLIC KEY" {
			return nil, errors.New("want a \"PUBLIC KEY\" PEM block (openssl pkey -pubout)")
		}
		der = block.Bytes
	} else {
		var err error
		if der, err = base64.StdEncoding.DecodeString(s); err != nil {
			return nil, errors.New("not base64: want the base64 of the key's SubjectPublicKeyInfo, the line between the PEM markers of openssl pkey -pubout")
		}
	}
	k, err := x509.ParsePKIXPublicKey(der)
	if err != nil {
		return nil, fmt.Errorf("not a SubjectPublicKeyInfo: %v", err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("the key is a %T, not an Ed25519 key", k)
	}
	return pub, nil
}

// MarshalPublicKey writes pub as ParsePublicKey's one-line form: the base64 of its
// SubjectPublicKeyInfo.
func MarshalPublicKey(pub ed25519.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(der), nil
}
