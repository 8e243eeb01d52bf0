package jobs

import (
	"errors"
	"fmt"
	"strings"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/sqlscript"
)

// Check validates a decoded request against this worker without opening any connection: the
// target must be configured, every hook must be loaded and accept its parameters (in a phase
// it may run in, with no dependency cycle), and every migration's SQL must split into
// statements without transaction control. It implements intake.Checker.
func (p *Pipeline) Check(req *contract.Request) error {
	if req.Group == "" { // a group's members are found when its rollout is recorded
		if _, err := p.cfg.Targets.Get(req.Target); err != nil {
			return &contract.DecodeError{Code: contract.CodeUnknownTarget, Message: err.Error()}
		}
	}
	var problems []string
	code := ""
	for i := range req.Migrations {
		m := &req.Migrations[i]
		if _, err := p.cfg.Registry.PlanAll(m.Hooks); err != nil {
			c := contract.CodeInvalidHooks
			if errors.Is(err, hooks.ErrUnknownHook) {
				c = contract.CodeUnknownHook
			}
			code = firstOf(code, c)
			problems = append(problems, fmt.Sprintf("migration %s: %s", m.ID(), strings.ReplaceAll(err.Error(), "\n", "; ")))
		}
		for _, body := range []struct{ name, sql string }{{"up", m.UpSQL}, {"down", m.DownSQL}} {
			if body.sql == "" {
				continue
			}
			// The target's version is not known yet; the classification that depends on it
			// (ALTER TYPE ... ADD VALUE before PostgreSQL 12) is redone when the DDL runs.
			if _, err := segments(body.sql, sqlscript.DefaultServerVersionNum, m.NoTransaction); err != nil {
				code = firstOf(code, contract.CodeInvalidSQL)
				problems = append(problems, fmt.Sprintf("migration %s (%s SQL): %v", m.ID(), body.name, err))
			}
		}
	}
	if len(problems) > 0 {
		return &contract.DecodeError{Code: code, Message: strings.Join(problems, "; ")}
	}
	return nil
}

func firstOf(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
