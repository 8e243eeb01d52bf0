package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/target"
	"github.com/confiture-io/confiture-worker/internal/targetgroup"
)

// Target groups, for intake (intake.Rollouts): which names are groups, the targets a group's
// request must satisfy the signing policy of, and a group's members, added to the worker's
// targets as they resolve. A member is an ordinary target from then on; a worker that does not
// know it yet (another replica, or after a restart) finds it through the rollouts it is a
// member of (findMember).

// IsGroup reports whether name is a configured target group.
func (p *Pipeline) IsGroup(name string) bool {
	if p.cfg.Groups == nil {
		return false
	}
	_, ok := p.cfg.Groups.Group(name)
	return ok
}

// GroupTargets returns the configured targets group draws on.
func (p *Pipeline) GroupTargets(group string) []string { return p.cfg.Groups.Sources(group) }

// ResolveGroup resolves group now, adds its members to the worker's targets, and returns their
// names in order with the group's rollout policy over the worker's defaults. A group that
// cannot be resolved for a lasting reason is a *contract.DecodeError (unknown_group); an
// unreachable discovery database is returned as it is, to be retried.
func (p *Pipeline) ResolveGroup(ctx context.Context, group string) ([]string, contract.RolloutPolicy, error) {
	policy := contract.DefaultRolloutPolicy()
	g, ok := p.cfg.Groups.Group(group)
	if !ok {
		return nil, policy, &contract.DecodeError{Code: contract.CodeUnknownGroup, Message: fmt.Sprintf("unknown target group %q", group)}
	}
	if g.Rollout != nil {
		policy = g.Rollout.Over(policy)
	}
	members, err := p.addMembers(ctx, group)
	if errors.Is(err, targetgroup.ErrUnreachable) {
		return nil, policy, err
	}
	if err != nil {
		return nil, policy, &contract.DecodeError{Code: contract.CodeUnknownGroup, Message: err.Error()}
	}
	names := make([]string, len(members))
	for i, m := range members {
		names[i] = m.Name
	}
	return names, policy, nil
}

// addMembers resolves group and adds its members to the worker's targets.
func (p *Pipeline) addMembers(ctx context.Context, group string) ([]targetgroup.Member, error) {
	members, err := p.cfg.Groups.Resolve(ctx, group)
	if err != nil {
		return nil, err
	}
	for _, m := range members {
		if _, err := p.cfg.Targets.Add(m); err != nil {
			return nil, fmt.Errorf("target group %q: member %q: %w", group, m.Name, err)
		}
		p.memberOf.Store(m.Name, group)
	}
	return members, nil
}

// TargetSources returns the configured targets whose signing policy a request for target
// must satisfy: target itself, and for a member of a group (found like any target, through
// the rollouts it is a member of), the targets its group draws on, so that a member is never
// an unsigned way into a database whose target accepts only signed requests.
func (p *Pipeline) TargetSources(target string) []string {
	out := []string{target}
	if p.cfg.Groups == nil {
		return out
	}
	if _, err := p.cfg.Targets.Get(target); err != nil {
		return out
	}
	if g, ok := p.memberOf.Load(target); ok {
		out = append(out, p.cfg.Groups.Sources(g.(string))...)
	}
	return out
}

// findMember is the worker's targets' fallback for a name they do not know: a member of a
// rollout recorded by another worker, or before this one started. It resolves the member's
// group again (adding every member it finds) and returns the member's configuration.
func (p *Pipeline) findMember(ctx context.Context, name string) (target.Config, error) {
	group, err := p.cfg.Store.GroupOfMember(ctx, name)
	if err != nil {
		return target.Config{}, err
	}
	if group == "" || !p.IsGroup(group) {
		return target.Config{}, target.ErrUnknownTarget
	}
	members, err := p.addMembers(ctx, group)
	if err != nil {
		return target.Config{}, err
	}
	for _, m := range members {
		if m.Name == name {
			return m, nil
		}
	}
	return target.Config{}, fmt.Errorf("%w %q: it was a member of target group %q, which no longer finds it", target.ErrUnknownTarget, name, group)
}
