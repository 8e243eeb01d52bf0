package worker

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/observe"
)

// TestComposeFile loads docker-compose.yml with the compose specification's own loader (no
// Docker engine runs here) and checks the production-like cluster it promises: PostgreSQL, three
// NATS nodes routed to each other with JetStream, two worker replicas whose streams are kept by
// all three, a health check on every service (the worker's through `worker healthcheck`, the
// image having no curl), every secret a file that exists and none written inline, and a
// configuration the worker accepts.
func TestComposeFile(t *testing.T) {
	t.Parallel()
	root := filepath.Join("..", "..")
	opts, err := cli.NewProjectOptions([]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root), cli.WithName("confiture"))
	require.NoError(t, err)
	p, err := opts.LoadProject(context.Background())
	require.NoError(t, err)

	require.ElementsMatch(t, []string{"postgres", "nats1", "nats2", "nats3", "worker"}, p.ServiceNames())
	for name, s := range p.Services {
		require.NotNil(t, s.HealthCheck, "%s has no health check", name)
		require.False(t, s.HealthCheck.Disable, name)
		require.NotEmpty(t, s.HealthCheck.Test, name)
	}

	// Three NATS nodes, each routed to the two others, with JetStream.
	nodes := []string{"nats1", "nats2", "nats3"}
	for _, n := range nodes {
		cmd := strings.Join(p.Services[n].Command, " ")
		require.Contains(t, cmd, "-js", n)
		require.Contains(t, cmd, "--cluster_name confiture", n)
		require.Contains(t, cmd, "--name "+n, n)
		for _, other := range nodes {
			if other != n {
				require.Contains(t, cmd, "nats://"+other+":6222", "%s routes to %s", n, other)
			}
		}
	}

	w := p.Services["worker"]
	require.Equal(t, 2, w.GetScale(), "two worker replicas")
	require.Equal(t, types.HealthCheckTest{"CMD", "/usr/local/bin/worker", "healthcheck"}, w.HealthCheck.Test)
	env := map[string]string{}
	for k, v := range w.Environment {
		require.NotNil(t, v, "%s has no value", k)
		env[k] = *v
	}
	require.Equal(t, "3", env["CONFITURE_STREAM_REPLICAS"])
	for _, n := range nodes {
		require.Contains(t, env["CONFITURE_NATS_URL"], "nats://"+n+":4222")
	}
	for dep, cond := range w.DependsOn {
		require.Equal(t, types.ServiceConditionHealthy, cond.Condition, "the worker waits for %s to be healthy", dep)
	}
	require.Len(t, w.DependsOn, 4)

	// The worker accepts this configuration, as its environment gives it.
	var cfg Config
	require.NoError(t, ApplyEnv(&cfg, func(k string) string { return env[k] }, environ(env)))
	cfg = cfg.WithDefaults()
	require.NoError(t, cfg.Validate())
	require.Equal(t, 3, cfg.StreamReplicas)
	require.Equal(t, "0.0.0.0:9090", cfg.HTTPAddr)

	// No secret inline: a variable whose name says secret points at a file, and no URL carries
	// a password; every secret is a file of the repository.
	secretName := regexp.MustCompile(`(?i)password|passwd|secret|token|credential|pgpass`)
	for name, s := range p.Services {
		for k, v := range s.Environment {
			if v == nil {
				continue
			}
			if secretName.MatchString(k) {
				require.True(t, strings.HasPrefix(*v, "/run/secrets/"), "%s: %s=%q is inline; mount a secret file", name, k, *v)
			}
			require.NotRegexp(t, `://[^/@\s]*:[^/@\s]*@`, *v, "%s: %s holds a URL with a password", name, k)
		}
		for _, ref := range s.Secrets {
			require.Contains(t, p.Secrets, ref.Source, "%s uses secret %s, which is not defined", name, ref.Source)
		}
	}
	require.NotEmpty(t, p.Secrets)
	for name, sec := range p.Secrets {
		require.Empty(t, sec.Environment, "secret %s comes from the environment", name)
		require.NotEmpty(t, sec.File, "secret %s is not a file", name)
		_, err := os.Stat(sec.File)
		require.NoError(t, err, "secret %s", name)
	}
	require.ElementsMatch(t, []string{"pgpass", "http_credentials"}, secretSources(w.Secrets))
	_, err = observe.LoadCredentials(p.Secrets["http_credentials"].File)
	require.NoError(t, err, "the worker accepts the HTTP credentials file")
	pgpass, err := os.ReadFile(p.Secrets["pgpass"].File)
	require.NoError(t, err)
	require.Regexp(t, `(?m)^postgres:5432:\*:postgres:\S+$`, string(pgpass))

	// The build context leaves out what the image does not need, secrets first.
	ignore, err := os.ReadFile(filepath.Join(root, ".dockerignore"))
	require.NoError(t, err)
	lines := strings.Split(string(ignore), "\n")
	for _, want := range []string{".git", "deploy/secrets", "bin"} {
		require.True(t, slices.Contains(lines, want), ".dockerignore leaves out %s", want)
	}
}

func environ(env map[string]string) []string {
	var out []string
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	return out
}

func secretSources(refs []types.ServiceSecretConfig) []string {
	var out []string
	for _, r := range refs {
		out = append(out, r.Source)
	}
	return out
}
