package jobs

import (
	"slices"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/runstore"
)

// The phase pipeline: which phase follows which. This is the contract users rely on
// (../shared/SPEC.md, "Phase order"):
//
//	up, per migration in version order:
//	  before_validation -> before_ddl -> ddl -> after_ddl -> after_validation -> cleanup
//	down, per migration in reverse version order:
//	  before_ddl -> ddl -> cleanup
//	on a failure that is final: on_error of the failing migration, then the run fails.
//
// A migration that an earlier run left incomplete starts at the first phase that run did not
// finish (its plan entry's From), and goes on from there in the same order.
//
// A phase without hooks has nothing to do: the run passes it without a job or an event (the
// ddl phase always has work). Migrations without hooks in a row share one job, which applies
// each in its own target transaction with its tracking row (see phaseWorker.Work).

var (
	upPhases = []string{
		contract.PhaseBeforeValidation, contract.PhaseBeforeDDL, contract.PhaseDDL,
		contract.PhaseAfterDDL, contract.PhaseAfterValidation, contract.PhaseCleanup,
	}
	downPhases = []string{contract.PhaseBeforeDDL, contract.PhaseDDL, contract.PhaseCleanup}
)

// PhasesFor returns the phases each migration goes through in direction.
func PhasesFor(direction string) []string {
	if direction == contract.DirectionDown {
		return downPhases
	}
	return upPhases
}

// firstPhase is where the run starts migration e.
func firstPhase(direction string, e runstore.PlanEntry) string {
	if e.From != "" {
		return e.From
	}
	return PhasesFor(direction)[0]
}

// Works reports whether a step has work to do. A phase without hooks has none, and the run
// passes it without a job or an event; nil means every phase has work.
type Works func(Step) bool

// steps returns the steps of migration e that have work, in order. It is never empty: a
// migration whose phases from e.From on all lack work keeps its last phase, where it is
// recorded complete (a resumed migration with nothing left).
func steps(direction string, e runstore.PlanEntry, works Works) []Step {
	phases := PhasesFor(direction)
	var out []Step
	for _, ph := range phases[max(slices.Index(phases, firstPhase(direction, e)), 0):] {
		if s := (Step{Version: e.Version, Phase: ph}); works == nil || works(s) {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		out = append(out, Step{Version: e.Version, Phase: phases[len(phases)-1]})
	}
	return out
}

// FirstStep is where a run with plan starts. plan must not be empty; it is already in the
// order the migrations run (ascending for up, descending for down).
func FirstStep(direction string, plan runstore.Plan, works Works) Step {
	return steps(direction, plan[0], works)[0]
}

// NextStep returns the step after cur, whether the migration of cur is finished with it, and
// whether the run is finished (no next step).
func NextStep(direction string, plan runstore.Plan, cur Step, works Works) (next Step, migrationDone, runDone bool) {
	for i, e := range plan {
		if e.Version != cur.Version {
			continue
		}
		// The next step of the migration with work, after cur's phase (which may have none:
		// a job of a worker that ran every phase).
		if ci := slices.Index(PhasesFor(direction), cur.Phase); ci >= 0 {
			for _, s := range steps(direction, e, works) {
				if slices.Index(PhasesFor(direction), s.Phase) > ci {
					return s, false, false
				}
			}
		}
		if i+1 < len(plan) {
			return steps(direction, plan[i+1], works)[0], true, false
		}
		break
	}
	return Step{}, true, true
}

// phaseIndex is the position of phase in the up order; -1 for any other.
func phaseIndex(phase string) int { return slices.Index(upPhases, phase) }

// completesAt is the phase of migration m whose commit completes it, for a run that starts m
// at from (up): the last phase from from on that does work on the target (the DDL always
// does; another phase when it has hooks). "" when no phase from from on does any: the
// migration is then marked complete on its own at cleanup.
func completesAt(m *contract.Migration, from string) string {
	start := max(phaseIndex(from), 0)
	for i := len(upPhases) - 1; i >= start; i-- {
		p := upPhases[i]
		if p == contract.PhaseDDL || (i > phaseIndex(contract.PhaseDDL) && hasHooks(m, p)) {
			return p
		}
	}
	return ""
}
