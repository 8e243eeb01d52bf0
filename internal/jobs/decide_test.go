package jobs

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/runstore"
	"github.com/confiture-io/confiture-worker/internal/target"
)

func decideMig(v string) contract.Migration {
	return contract.Migration{Version: v, Name: "m" + v, UpSQL: "SELECT " + v, DownSQL: "SELECT -" + v, Checksum: "sum" + v}
}

func decideReq(direction string, versions ...string) *contract.Request {
	r := &contract.Request{Schema: contract.RequestSchemaV1, ID: "r", Target: "default", Direction: direction}
	for _, v := range versions {
		r.Migrations = append(r.Migrations, decideMig(v))
	}
	return r
}

func applied(v string, complete bool, phase string) target.Applied {
	return target.Applied{Version: v, Name: "m" + v, Checksum: "sum" + v, Complete: complete, Phase: phase, RunID: "run-" + v}
}

func TestDecideResumesIncompleteMigrations(t *testing.T) {
	t.Parallel()
	d, err := decide(decideReq("up", "001", "002", "003"), []target.Applied{
		applied("001", true, ""), applied("002", false, "after_ddl"),
	})
	require.NoError(t, err)
	require.Equal(t, runstore.Plan{{Version: "002", From: "after_validation"}, {Version: "003"}}, d.entries)
	require.Equal(t, []contract.ResumedMigration{{Version: "002", From: "after_validation"}}, d.Resumed)
	require.Equal(t, map[string]string{"002": "run-002"}, d.owners)
	require.Equal(t, 1, d.Applied)
	require.Empty(t, d.Incomplete)

	// Only the DDL committed: resume at after_ddl.
	d, err = decide(decideReq("up", "001"), []target.Applied{applied("001", false, "ddl")})
	require.NoError(t, err)
	require.Equal(t, runstore.Plan{{Version: "001", From: "after_ddl"}}, d.entries)
}

func TestDecideReportsIncompleteMigrationsItLeaves(t *testing.T) {
	t.Parallel()
	req := decideReq("up", "001", "002", "003")
	req.To = "001"
	d, err := decide(req, []target.Applied{applied("002", false, "after_ddl"), applied("009", false, "ddl")})
	require.NoError(t, err)
	require.Equal(t, runstore.Plan{{Version: "001"}}, d.entries, "002 is beyond to")
	require.Equal(t, []contract.IncompleteMigration{
		{Version: "002", Name: "m002", Phase: "after_ddl"},
		{Version: "009", Name: "m009", Phase: "ddl"}, // not in the request
	}, d.Incomplete)
}

func TestDecideDryRunLeavesIncompleteMigrationsOut(t *testing.T) {
	t.Parallel()
	req := decideReq("up", "001", "002")
	req.DryRun = true
	d, err := decide(req, []target.Applied{applied("001", false, "after_ddl")})
	require.NoError(t, err)
	require.Equal(t, runstore.Plan{{Version: "002"}}, d.entries)
	require.Empty(t, d.Resumed)
	require.Equal(t, []contract.IncompleteMigration{{Version: "001", Name: "m001", Phase: "after_ddl"}}, d.Incomplete)
}

func TestDecideDriftFailsUnlessForced(t *testing.T) {
	t.Parallel()
	changed := applied("001", false, "ddl")
	changed.Checksum = "old"
	_, err := decide(decideReq("up", "001"), []target.Applied{changed})
	var pe *planError
	require.ErrorAs(t, err, &pe)
	require.Equal(t, contract.CodeDrift, pe.Code(), "drift is checked for incomplete migrations too")

	req := decideReq("up", "001", "002")
	req.Force = true
	d, err := decide(req, []target.Applied{changed})
	require.NoError(t, err)
	require.Equal(t, []string{"001"}, d.Forced)
	require.Equal(t, runstore.Plan{{Version: "001", From: "after_ddl"}, {Version: "002"}}, d.entries)

	// Forced with nothing pending: the new checksum is still recorded.
	done := applied("001", true, "")
	done.Checksum = "old"
	req = decideReq("up", "001")
	req.Force = true
	d, err = decide(req, []target.Applied{done})
	require.NoError(t, err)
	require.Empty(t, d.entries)
	require.Len(t, d.forced, 1)
}

func TestDecideDownRevertsIncompleteMigrations(t *testing.T) {
	t.Parallel()
	d, err := decide(decideReq("down", "001", "002"), []target.Applied{applied("001", true, ""), applied("002", false, "after_ddl")})
	require.NoError(t, err)
	require.Equal(t, runstore.Plan{{Version: "002"}}, d.entries, "down of an incomplete migration is allowed")
}

func TestPhaseAfter(t *testing.T) {
	t.Parallel()
	require.Equal(t, "after_ddl", phaseAfter("ddl"))
	require.Equal(t, "after_ddl", phaseAfter(""), "a tracking row without a phase: its DDL committed")
	require.Equal(t, "cleanup", phaseAfter("after_validation"))
	require.Equal(t, "cleanup", phaseAfter("cleanup"))
}

func TestDecideOrdersVersionsAsNumbers(t *testing.T) {
	t.Parallel()
	// Up: 9 before 10, 1.2 before 1.10; "to" compares the same way, and "2.0" is "2".
	req := decideReq("up", "10", "9", "1.10", "1.2", "2", "11")
	req.To = "10"
	d, err := decide(req, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"1.2", "1.10", "2", "9", "10"}, d.Versions)
	req.To = "2.0"
	d, err = decide(req, nil)
	require.NoError(t, err)
	require.Equal(t, []string{"1.2", "1.10", "2"}, d.Versions)

	// A version spelt otherwise in the request than in the tracking table is the same
	// migration: "001" applied is "1" requested.
	d, err = decide(decideReq("up", "1", "2"), []target.Applied{{Version: "001", Name: "m1", Checksum: "sum1", Complete: true}})
	require.NoError(t, err)
	require.Equal(t, []string{"2"}, d.Versions)
	require.Equal(t, 1, d.Applied)

	// Down to 9 reverts 11 and 10 (the applied rows come in number order), not 9.
	down := decideReq("down", "9", "10", "11")
	down.To = "9"
	d, err = decide(down, []target.Applied{applied("9", true, ""), applied("10", true, ""), applied("11", true, "")})
	require.NoError(t, err)
	require.Equal(t, []string{"11", "10"}, d.Versions)
}
