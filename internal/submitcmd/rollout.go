package submitcmd

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/pflag"

	"github.com/confiture-io/confiture-worker/client"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/runview"
)

// rolloutFlags are the flags of a group's rollout policy; unset ones take the group's
// configured defaults, then the worker's.
type rolloutFlags struct {
	canary, waveSize, wavePercent, maxConcurrent, failureThreshold, failurePercent int
	pause                                                                          time.Duration
	dryRunAll                                                                      bool
}

func addRolloutFlags(f *pflag.FlagSet, r *rolloutFlags) {
	f.IntVar(&r.canary, "canary", 0, "with --group: how many targets run first, alone; any failure among them halts the rollout (default: the group's, else 1)")
	f.IntVar(&r.waveSize, "wave-size", 0, "with --group: targets per wave after the canary (default: the group's, else 25% of them)")
	f.IntVar(&r.wavePercent, "wave-percent", 0, "with --group: targets per wave after the canary, as a percentage of them")
	f.IntVar(&r.maxConcurrent, "max-concurrent", 0, "with --group: the most runs of the rollout at once (default: the group's, else 10)")
	f.DurationVar(&r.pause, "pause", 0, "with --group: the wait between two waves (say 5m)")
	f.IntVar(&r.failureThreshold, "failure-threshold", 0, "with --group: failed runs a wave tolerates; past it the rollout halts (default: the group's, else 0)")
	f.IntVar(&r.failurePercent, "failure-percent", 0, "with --group: failed runs a wave tolerates, as a percentage of the wave")
	f.BoolVar(&r.dryRunAll, "dry-run-all", false, "with --group --dry-run: dry-run every target, not only the canary")
}

var rolloutFlagNames = []string{"canary", "wave-size", "wave-percent", "max-concurrent", "pause", "failure-threshold", "failure-percent", "dry-run-all"}

// checkGroupFlags refuses --group with --target, rollout flags without --group, and what
// applies to one target's dry-run only.
func (s *submitter) checkGroupFlags() error {
	o, flags := &s.o, s.cmd.Flags()
	if o.group == "" {
		for _, n := range rolloutFlagNames {
			if flags.Changed(n) {
				return s.usage("--%s applies to a rollout: add --group", n)
			}
		}
		return nil
	}
	switch {
	case flags.Changed("target"):
		return s.usage("--target and --group both name what to migrate: give one (--group runs on every member of a target group)")
	case o.html != "":
		return s.usage("--html writes one target's dry-run report: with --group, use 'submit run show' on a member's run, or drop --html")
	case flags.Changed("fail-on"):
		return s.usage("--fail-on applies to one target's dry-run: with --group, a member whose dry-run fails fails the rollout")
	case o.rollout.dryRunAll && !o.dryRun:
		return s.usage("--dry-run-all applies to a dry-run: add --dry-run")
	}
	o.target = ""
	return nil
}

// rolloutPolicy is the request's rollout policy from the flags set, or nil.
func (s *submitter) rolloutPolicy() *contract.RolloutPolicy {
	if s.o.group == "" {
		return nil
	}
	r, flags := s.o.rollout, s.cmd.Flags()
	var p contract.RolloutPolicy
	set := false
	if flags.Changed("canary") {
		p.Canary, set = &r.canary, true
	}
	if flags.Changed("failure-threshold") {
		p.FailureThreshold, set = &r.failureThreshold, true
	}
	p.WaveSize, p.WavePercent, p.MaxConcurrent, p.FailurePercent = r.waveSize, r.wavePercent, r.maxConcurrent, r.failurePercent
	p.PauseMS, p.DryRunAll = r.pause.Milliseconds(), r.dryRunAll
	if !set && p == (contract.RolloutPolicy{}) {
		return nil
	}
	return &p
}

// publishedRollout says what became of a group's request, and with --wait follows its
// rollout: the exit code is 0 when every target completed, 1 when one failed or was skipped or
// the rollout halted, 3 when the worker rejected the request.
func (s *submitter) publishedRollout(ctx context.Context, c *client.Client, req *contract.Request, pub client.Published) error {
	o := &s.o
	if !o.wait {
		if pub.Duplicate {
			s.info("request %s was already published; nothing new was sent (rollout %s)", req.ID, pub.Run)
		} else {
			s.info("published request %s for group %s: rollout %s", req.ID, req.Group, pub.Run)
		}
		s.info("see it with: submit rollout show %s --group %s", pub.Run, req.Group)
		s.info("or subscribe to %s (stream %s)", contract.RunEventsFilter(req.Group, pub.Run), contract.EventStream)
		return nil
	}
	if pub.Duplicate {
		s.info("request %s was already published; following the existing rollout", req.ID)
	}
	r := runview.NewRolloutRenderer(s.stdout, runview.RenderOptions{JSON: o.json, Color: s.env.color && !o.json, Terminal: s.env.terminal && !o.json})
	wctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	final, err := c.WaitRollout(wctx, req.Group, pub.Run, r.Render)
	r.Close()
	switch {
	case err == nil && final != nil:
	case ctx.Err() != nil:
		s.errorf("interrupted while waiting for rollout %s; it goes on in the worker", pub.Run)
		return exit(ExitInterrupted)
	case wctx.Err() != nil:
		s.errorf("timed out after %s waiting for rollout %s to end; it may still be running (submit rollout show %s --group %s)", o.timeout, pub.Run, pub.Run, req.Group)
		return exit(ExitTimeout)
	default:
		if err == nil {
			err = errors.New("the event stream ended before the rollout's end")
		}
		s.errorf("following rollout %s: %s", pub.Run, s.redact(err.Error()))
		return exit(ExitFailed)
	}
	if final.Kind == contract.KindRunRejected {
		s.errorf("the worker rejected the request (exit %d)", ExitRejected)
		return exit(ExitRejected)
	}
	w := s.stdout
	if o.json {
		w = s.stderr
	}
	r.Summary(w)
	st := r.Status()
	switch {
	case st == nil:
		s.errorf("the rollout's last event carries no status (exit %d)", ExitFailed)
		return exit(ExitFailed)
	case st.State == contract.RolloutHalted:
		fmt.Fprintf(w, "the rollout is halted: resume it with\n  submit rollout resume %s --group %s --failed retry   (run the failed targets again)\n  submit rollout resume %s --group %s --failed skip    (leave them failed)\n",
			st.Rollout, st.Group, st.Rollout, st.Group)
		s.errorf("rollout %s halted (exit %d)", st.Rollout, ExitFailed)
		return exit(ExitFailed)
	case st.Failed > 0 || st.Skipped > 0:
		s.errorf("rollout %s completed with %d failed and %d skipped target(s) (exit %d)", st.Rollout, st.Failed, st.Skipped, ExitFailed)
		return exit(ExitFailed)
	}
	return nil
}
