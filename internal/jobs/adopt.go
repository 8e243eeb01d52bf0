package jobs

import (
	"context"
	"errors"
	"fmt"

	"github.com/confiture-io/confiture-worker/internal/adoption"
	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/hooks"
	"github.com/confiture-io/confiture-worker/internal/target"
)

// adoption reads the history table of the tool the request adopts, checks it against the
// request, and returns the tracking rows to record: the migrations that tool applied and the
// tracking table does not hold yet. It records nothing (takeOver does, in its transaction).
// A history the worker cannot take over fails the run with adopt_mismatch.
func (pl *planAttempt) adoption(ctx context.Context, t *target.Target, q adoption.Querier, applied []target.Applied) (rows []target.Applied, from string, err error) {
	a := pl.attempt
	req := a.rc.req
	h, err := adoption.Read(ctx, q, req.Adopt, req.AdoptTable, t.TrackingSchema()+".schema_migrations")
	if err != nil {
		return nil, "", adoptErr(err)
	}
	tracked := map[string]bool{}
	for _, r := range applied {
		tracked[contract.VersionKey(r.Version)] = true
	}
	records, err := h.Check(req.Migrations, tracked)
	if err != nil {
		return nil, "", adoptErr(err)
	}
	rows = make([]target.Applied, 0, len(records))
	for _, r := range records {
		by := "adopted from " + req.Adopt
		if r.Entry.By != "" {
			by += fmt.Sprintf(" (installed by %s)", r.Entry.By)
		}
		rows = append(rows, target.Applied{Version: r.Migration.Version, Name: r.Migration.Name, Checksum: r.Migration.Checksum,
			AppliedAt: r.Entry.AppliedAt, ExecutionTimeMS: r.Entry.ExecutionMS, AppliedBy: by, RunID: a.rc.row.ID, Complete: true})
	}
	return rows, req.Adopt + ": " + h.Table, nil
}

func adoptErr(err error) error {
	var m *adoption.MismatchError
	if errors.As(err, &m) {
		return hooks.Permanent(&planError{code: contract.CodeAdoptMismatch, msg: m.Msg})
	}
	return err
}

// adoptNote is what the run's messages say of an adoption: what it recorded, or would.
func adoptNote(d *decision, dryRun bool) string {
	if d.AdoptedFrom == "" {
		return ""
	}
	verb := "adopted"
	if dryRun {
		verb = "would adopt"
	}
	if len(d.Adopted) == 0 {
		return fmt.Sprintf("; %s: nothing to adopt, every migration it applied is tracked already", d.AdoptedFrom)
	}
	return fmt.Sprintf("; %s %d migration(s) from %s: %s", verb, len(d.Adopted), d.AdoptedFrom, adoption.ClipList(d.Adopted))
}
