package observe_test

import (
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/observe"
)

const credentialsFile = `# roles and secrets
operator token operator-token-0123456789
viewer   token viewer-token-0123456789

operator user  alice:alice-password
viewer   user  prometheus:scrape-password
`

// caller is how a request authenticates.
type caller struct {
	name  string
	apply func(*http.Request)
}

func bearer(token string) func(*http.Request) {
	return func(r *http.Request) { r.Header.Set("Authorization", "Bearer "+token) }
}

func basic(user, password string) func(*http.Request) {
	return func(r *http.Request) { r.SetBasicAuth(user, password) }
}

var callers = []caller{
	{"anonymous", func(*http.Request) {}},
	{"wrong token", bearer("operator-token-0123456780")},
	{"wrong password", basic("alice", "alice-passworD")},
	{"unknown user", basic("mallory", "alice-password")},
	{"viewer token", bearer("viewer-token-0123456789")},
	{"viewer user", basic("prometheus", "scrape-password")},
	{"operator token", bearer("operator-token-0123456789")},
	{"operator user", basic("alice", "alice-password")},
}

func do(t *testing.T, method, url, body string, apply func(*http.Request)) (int, http.Header) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, url, strings.NewReader(body))
	require.NoError(t, err)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	apply(req)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	_ = resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// loopbackURL is the URL of a server that listens on every interface, reached on 127.0.0.1.
func loopbackURL(base string) string {
	return "http://127.0.0.1:" + base[strings.LastIndex(base, ":")+1:]
}

// Each role against each path, on a server with credentials and a real River UI: health is
// open; the index and /metrics need a viewer or an operator; River UI, reading or acting, needs
// an operator.
func TestServerCredentialsEachRoleAgainstEachPath(t *testing.T) {
	t.Parallel()
	ui, client := newRiverUI(t)
	creds, err := observe.ParseCredentials("creds", []byte(credentialsFile))
	require.NoError(t, err)
	// Beyond loopback (every interface), as the credentials are for; the test calls it on
	// 127.0.0.1.
	s, err := observe.NewServer(observe.ServerOptions{Addr: "0.0.0.0:0", Metrics: observe.NewMetrics(), RiverUI: ui, Credentials: creds})
	require.NoError(t, err)
	base := loopbackURL(startServer(t, s))

	insert := func() string {
		res, err := client.Insert(context.Background(), noteArgs{Note: "x"}, nil)
		require.NoError(t, err)
		return `{"ids":["` + strconv.FormatInt(res.Job.ID, 10) + `"]}`
	}
	type path struct {
		method, path string
		body         func() string
		// want maps the caller's kind to the status expected.
		anonymous, viewer, operator int
	}
	noBody := func() string { return "" }
	paths := []path{
		{"GET", "/healthz", noBody, 200, 200, 200},
		{"GET", "/readyz", noBody, 200, 200, 200},
		{"GET", "/", noBody, 401, 200, 200},
		{"GET", "/metrics", noBody, 401, 200, 200},
		{"GET", "/riverui/", noBody, 401, 403, 200},
		{"GET", "/riverui/api/jobs?state=available&limit=1", noBody, 401, 403, 200},
		{"POST", "/riverui/api/jobs/cancel", insert, 401, 403, 200},
	}
	for _, p := range paths {
		for _, c := range callers {
			want := p.anonymous
			switch {
			case strings.HasPrefix(c.name, "viewer"):
				want = p.viewer
			case strings.HasPrefix(c.name, "operator"):
				want = p.operator
			}
			code, hdr := do(t, p.method, base+p.path, p.body(), c.apply)
			require.Equal(t, want, code, "%s %s as %s", p.method, p.path, c.name)
			if code == http.StatusUnauthorized {
				require.Contains(t, strings.Join(hdr.Values("WWW-Authenticate"), " "), `Basic realm="confiture worker"`)
			}
		}
	}
}

// Without credentials a server on loopback serves everything, as it always did; one that listens
// beyond loopback serves only the health endpoints, and says how to open the rest.
func TestServerWithoutCredentialsBeyondLoopbackServesOnlyHealth(t *testing.T) {
	t.Parallel()
	s, err := observe.NewServer(observe.ServerOptions{Addr: "0.0.0.0:0", Metrics: observe.NewMetrics()})
	require.NoError(t, err)
	base := loopbackURL(startServer(t, s))
	code, _, _ := get(t, base+"/healthz")
	require.Equal(t, http.StatusOK, code)
	code, _, body := get(t, base+"/metrics")
	require.Equal(t, http.StatusForbidden, code)
	require.Contains(t, body, "beyond loopback, and has no credentials")
	require.Contains(t, body, "http_credentials_file")

	local, err := observe.NewServer(observe.ServerOptions{Addr: "127.0.0.1:0", Metrics: observe.NewMetrics()})
	require.NoError(t, err)
	code, _, _ = get(t, startServer(t, local)+"/metrics")
	require.Equal(t, http.StatusOK, code)
}

func TestParseCredentialsRejectsBadFiles(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ file, want string }{
		{"", "no credential in the file"},
		{"# only a comment\n", "no credential in the file"},
		{"admin token operator-token-0123456789\n", `creds:1: role "admin": want viewer or operator`},
		{"operator token tiny-tok\n", "creds:1: the token is shorter than 16 characters"},
		{"\noperator user alice:tiny-pw\n", `creds:2: the password of user "alice" is shorter than 8 characters`},
		{"operator user alice\n", "creds:1: want <name>:<password> after user"},
		{"operator user alice:alice-password\nviewer user alice:other-password\n", `creds:2: user "alice" is listed twice`},
		{"operator key abcdefghijklmnopqrstuvwxyz\n", `creds:1: "key": want token or user`},
		{"operator token two words-0123456789\n", "creds:1: want `<role> token <token>`"},
	} {
		_, err := observe.ParseCredentials("creds", []byte(tc.file))
		require.ErrorContains(t, err, tc.want, "%q", tc.file)
		for _, secret := range []string{"operator-token-0123456789", "tiny-tok", "tiny-pw", "alice-password", "abcdefghijklmnopqrstuvwxyz"} {
			require.NotContains(t, err.Error(), secret, "an error never shows the secret")
		}
	}
}
