package observe

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
)

// Role is what an HTTP credential may do.
type Role string

const (
	// RoleViewer sees the worker (the index, /metrics; health is open to anyone) and cannot
	// act: River UI, which retries, cancels and deletes jobs, is not for it, and neither is any
	// request other than GET or HEAD.
	RoleViewer Role = "viewer"
	// RoleOperator may use everything the server offers, River UI included.
	RoleOperator Role = "operator"
)

// Minimum lengths of the secrets a credentials file may hold.
const (
	minTokenLen    = 16
	minPasswordLen = 8
)

// Credentials are the callers the HTTP server accepts, each with its role: bearer tokens
// (Authorization: Bearer) and users (basic authentication). Secrets are kept as SHA-256 digests
// and compared in constant time.
type Credentials struct {
	tokens []secret
	users  map[string]secret
}

type secret struct {
	digest [sha256.Size]byte
	role   Role
}

// LoadCredentials reads a credentials file (see ParseCredentials).
func LoadCredentials(path string) (*Credentials, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("http credentials: %w", err)
	}
	return ParseCredentials(path, data)
}

// ParseCredentials parses a credentials file named name: one credential a line, blank lines and
// lines starting with # ignored.
//
//	<role> token <token>             a bearer token, at least 16 characters
//	<role> user <name>:<password>    a user (basic authentication), password at least 8 characters
//
// role is viewer or operator. An error names the line, never the secret on it.
func ParseCredentials(name string, data []byte) (*Credentials, error) {
	c := &Credentials{users: map[string]secret{}}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		fail := func(format string, args ...any) error {
			return fmt.Errorf("http credentials %s:%d: %s", name, n, fmt.Sprintf(format, args...))
		}
		fields := strings.Fields(line)
		if len(fields) != 3 {
			return nil, fail("want `<role> token <token>` or `<role> user <name>:<password>` (no spaces in the secret)")
		}
		role := Role(fields[0])
		if role != RoleViewer && role != RoleOperator {
			return nil, fail("role %q: want viewer or operator", fields[0])
		}
		switch fields[1] {
		case "token":
			if len(fields[2]) < minTokenLen {
				return nil, fail("the token is shorter than %d characters", minTokenLen)
			}
			c.tokens = append(c.tokens, secret{digest: sha256.Sum256([]byte(fields[2])), role: role})
		case "user":
			user, password, ok := strings.Cut(fields[2], ":")
			switch {
			case !ok || user == "":
				return nil, fail("want <name>:<password> after user")
			case len(password) < minPasswordLen:
				return nil, fail("the password of user %q is shorter than %d characters", user, minPasswordLen)
			}
			if _, dup := c.users[user]; dup {
				return nil, fail("user %q is listed twice", user)
			}
			c.users[user] = secret{digest: sha256.Sum256([]byte(password)), role: role}
		default:
			return nil, fail("%q: want token or user", fields[1])
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("http credentials %s: %w", name, err)
	}
	if len(c.tokens) == 0 && len(c.users) == 0 {
		return nil, fmt.Errorf("http credentials %s: no credential in the file", name)
	}
	return c, nil
}

// authenticate returns the role of the credentials r carries; ok false when it carries none
// that are valid. Every configured token is compared, so the time taken does not say which one
// came close.
func (c *Credentials) authenticate(r *http.Request) (role Role, ok bool) {
	if user, password, basic := r.BasicAuth(); basic {
		s, known := c.users[user]
		d := sha256.Sum256([]byte(password))
		if !known {
			s = secret{} // compare all the same
		}
		return s.role, subtle.ConstantTimeCompare(d[:], s.digest[:]) == 1 && known
	}
	token, bearer := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !bearer {
		return "", false
	}
	d := sha256.Sum256([]byte(strings.TrimSpace(token)))
	for _, s := range c.tokens {
		if subtle.ConstantTimeCompare(d[:], s.digest[:]) == 1 {
			role, ok = s.role, true
		}
	}
	return role, ok
}

// isLoopback reports whether the listen address addr (host:port) accepts only connections from
// this machine.
func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// guard puts the server's paths behind opts.Credentials. /healthz and /readyz stay open for
// probes. With credentials, every other path needs valid ones (401 otherwise), and a viewer may
// only read, and not use River UI (403). Without credentials, a server on loopback serves
// everything, as before; one that listens beyond loopback serves only the health endpoints and
// says how to open the rest.
func guard(opts *ServerOptions, next http.Handler) http.Handler {
	open := opts.Credentials == nil && isLoopback(opts.Addr)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if open || r.URL.Path == "/healthz" || r.URL.Path == "/readyz" {
			next.ServeHTTP(w, r)
			return
		}
		if opts.Credentials == nil {
			http.Error(w, fmt.Sprintf("this worker's HTTP server listens on %s, beyond loopback, and has no credentials: it serves only /healthz and /readyz there. "+
				"Give it a credentials file (http_credentials_file, see docs/SECURITY.md), or listen on 127.0.0.1", opts.Addr), http.StatusForbidden)
			return
		}
		role, ok := opts.Credentials.authenticate(r)
		if !ok {
			w.Header().Add("WWW-Authenticate", `Basic realm="confiture worker", charset="UTF-8"`)
			w.Header().Add("WWW-Authenticate", `Bearer realm="confiture worker"`)
			http.Error(w, "credentials required: a bearer token or a user of the worker's http credentials file", http.StatusUnauthorized)
			return
		}
		if role != RoleOperator {
			switch {
			case r.URL.Path == RiverUIPrefix || strings.HasPrefix(r.URL.Path, RiverUIPrefix+"/"):
				http.Error(w, "River UI retries, cancels and deletes jobs: it needs operator credentials", http.StatusForbidden)
				return
			case r.Method != http.MethodGet && r.Method != http.MethodHead:
				http.Error(w, "viewer credentials can only read", http.StatusForbidden)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
