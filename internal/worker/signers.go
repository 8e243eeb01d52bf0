package worker

import (
	"fmt"
	"slices"
	"strings"

	"github.com/confiture-io/confiture-worker/internal/target"
)

// envSignersPrefix starts the variables that set a target's signers:
// CONFITURE_SIGNERS_<NAME>=<id>=<public key>[,<id>=<public key>...].
const envSignersPrefix = EnvPrefix + "SIGNERS_"

// readEnvSigners reads the CONFITURE_SIGNERS_<NAME> variables of environ into cfg, to be
// applied to the targets by WithDefaults. A variable that is set requires signatures on its
// target; the name is lower-cased, as for CONFITURE_TARGET_<NAME>.
func readEnvSigners(cfg *Config, environ []string) error {
	var errs []string
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || !strings.HasPrefix(k, envSignersPrefix) || v == "" {
			continue
		}
		name := strings.ToLower(strings.TrimPrefix(k, envSignersPrefix))
		var signers []target.Signer
		for _, entry := range strings.Split(v, ",") {
			entry = strings.TrimSpace(entry)
			if entry == "" {
				continue
			}
			id, key, ok := strings.Cut(entry, "=")
			if !ok || id == "" || key == "" {
				errs = append(errs, fmt.Sprintf("%s: want <key id>=<public key>[,<key id>=<public key>...], got an entry without '='", k))
				continue
			}
			signers = append(signers, target.Signer{ID: strings.TrimSpace(id), PublicKey: strings.TrimSpace(key)})
		}
		if cfg.envSigners == nil {
			cfg.envSigners = map[string][]target.Signer{}
		}
		cfg.envSigners[name] = signers
	}
	if len(errs) > 0 {
		return fmt.Errorf("%s", strings.Join(errs, "; "))
	}
	return nil
}

// applyEnvSigners gives each target named by a CONFITURE_SIGNERS_<NAME> variable those
// signers (replacing the file's) and requires signatures on it. Variables naming no target
// stay in envSigners, for Validate to report.
func (cfg *Config) applyEnvSigners() {
	if len(cfg.envSigners) == 0 {
		return
	}
	left := map[string][]target.Signer{}
	for name, signers := range cfg.envSigners {
		i := slices.IndexFunc(cfg.Targets, func(t target.Config) bool { return t.Name == name })
		if i < 0 {
			left[name] = signers
			continue
		}
		cfg.Targets = slices.Clone(cfg.Targets)
		cfg.Targets[i].Signers = signers
		cfg.Targets[i].RequireSigned = true
	}
	cfg.envSigners = nil
	if len(left) > 0 {
		cfg.envSigners = left
	}
}

func (cfg Config) envSignersError() error {
	names := make([]string, 0, len(cfg.envSigners))
	for n := range cfg.envSigners {
		names = append(names, n)
	}
	slices.Sort(names)
	return fmt.Errorf("%s%s: no target %q is configured", envSignersPrefix, strings.ToUpper(names[0]), names[0])
}
