package jobs

import "github.com/confiture-io/confiture-worker/internal/contract"

// The phase pipeline: which phase follows which. This is the contract users rely on
// (../shared/SPEC.md, "Phase order"):
//
//	up, per migration in version order:
//	  before_validation -> before_ddl -> ddl -> after_ddl -> after_validation -> cleanup
//	down, per migration in reverse version order:
//	  before_ddl -> ddl -> cleanup
//	on a failure that is final: on_error of the failing migration, then the run fails.

var (
	upPhases = []string{
		contract.PhaseBeforeValidation, contract.PhaseBeforeDDL, contract.PhaseDDL,
		contract.PhaseAfterDDL, contract.PhaseAfterValidation, contract.PhaseCleanup,
	}
	downPhases = []string{contract.PhaseBeforeDDL, contract.PhaseDDL, contract.PhaseCleanup}
)

// Step is one position in a run: a phase of a migration.
type Step struct {
	Version string
	Phase   string
}

// PhasesFor returns the phases each migration goes through in direction.
func PhasesFor(direction string) []string {
	if direction == contract.DirectionDown {
		return downPhases
	}
	return upPhases
}

// FirstStep is where a run with plan starts. plan must not be empty; it is already in the
// order the migrations run (ascending for up, descending for down).
func FirstStep(direction string, plan []string) Step {
	return Step{Version: plan[0], Phase: PhasesFor(direction)[0]}
}

// NextStep returns the step after cur, whether the migration of cur is finished with it, and
// whether the run is finished (no next step).
func NextStep(direction string, plan []string, cur Step) (next Step, migrationDone, runDone bool) {
	phases := PhasesFor(direction)
	for i, p := range phases {
		if p == cur.Phase && i+1 < len(phases) {
			return Step{Version: cur.Version, Phase: phases[i+1]}, false, false
		}
	}
	for i, v := range plan {
		if v == cur.Version && i+1 < len(plan) {
			return Step{Version: plan[i+1], Phase: phases[0]}, true, false
		}
	}
	return Step{}, true, true
}
