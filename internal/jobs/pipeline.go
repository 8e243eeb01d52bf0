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

// FirstStep is where a run with plan starts. plan must not be empty; it is already in the
// order the migrations run (ascending for up, descending for down).
func FirstStep(direction string, plan runstore.Plan) Step {
	return Step{Version: plan[0].Version, Phase: firstPhase(direction, plan[0])}
}

// NextStep returns the step after cur, whether the migration of cur is finished with it, and
// whether the run is finished (no next step).
func NextStep(direction string, plan runstore.Plan, cur Step) (next Step, migrationDone, runDone bool) {
	phases := PhasesFor(direction)
	if i := slices.Index(phases, cur.Phase); i >= 0 && i+1 < len(phases) {
		return Step{Version: cur.Version, Phase: phases[i+1]}, false, false
	}
	for i, e := range plan {
		if e.Version == cur.Version && i+1 < len(plan) {
			n := plan[i+1]
			return Step{Version: n.Version, Phase: firstPhase(direction, n)}, true, false
		}
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
