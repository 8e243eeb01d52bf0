package jobs

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/riverqueue/river"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/runstore"
)

// Rollouts. A request naming a target group becomes a rollout (runstore.Rollout): an ordinary
// run per member, started in waves, the canary first. A rollout moves only inside the
// queue-database transactions that already change its runs: intake starts it with its first
// wave (StartRollout), and the transaction that ends a member's run records the member's end,
// and starts the next members, the next wave, or halts or completes the rollout
// (rolloutRunEnded), with the rollout's events. So a rollout survives whatever crashes when,
// like its runs. An operator's resume moves it in the resume's own transaction
// (ResumeRollout). Only the next wave after a pause waits for a River job of its own
// (RolloutArgs); the reconciler drives every running rollout too, as a backstop.
//
// Locks: a transaction takes a rollout's row lock before any target's admission lock, never
// after one.

// RolloutArgs is the job that drives a rollout: the next wave once its pause is over.
type RolloutArgs struct {
	RolloutID string `json:"rollout_id"`
	Group     string `json:"group"`
}

// Kind is River's job kind.
func (RolloutArgs) Kind() string { return "confiture_rollout" }

type rolloutWorker struct {
	river.WorkerDefaults[RolloutArgs]
	p *Pipeline
}

func (w *rolloutWorker) Work(ctx context.Context, job *river.Job[RolloutArgs]) error {
	return w.p.inTx(ctx, func(tx pgx.Tx) error { return w.p.driveRollout(ctx, tx, w.p.client, job.Args.RolloutID) })
}

// StartRollout starts a rollout recorded in tx (runstore.Store.InsertRollout): its
// rollout.started and its first wave. It implements part of intake.Rollouts.
func (p *Pipeline) StartRollout(ctx context.Context, tx pgx.Tx, r *runstore.Rollout) error {
	if p.client == nil {
		return errors.New("jobs: no River client (SetClient was not called)")
	}
	ms, err := p.cfg.Store.RolloutMembers(ctx, tx, r.ID)
	if err != nil {
		return err
	}
	d := &rolloutDrive{p: p, client: p.client, ctx: ctx, tx: tx, r: r, ms: ms}
	started := d.event(contract.KindRolloutStarted)
	started.Message = fmt.Sprintf("rollout of %d target(s) of group %s in %d wave(s)", len(ms), r.Group, r.Waves)
	d.evs = append(d.evs, started, d.waveStarted())
	return d.run(ctx, tx)
}

// driveRollout locks a rollout and moves it on as far as it can go now.
func (p *Pipeline) driveRollout(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], id string) error {
	d, err := p.lockRollout(ctx, tx, client, id)
	if err != nil || d == nil {
		return err
	}
	return d.run(ctx, tx)
}

// lockRollout reads a rollout and its members, the rollout locked for the rest of tx (nil when
// it is not found: its job outlived it).
func (p *Pipeline) lockRollout(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], id string) (*rolloutDrive, error) {
	r, err := p.cfg.Store.GetRollout(ctx, tx, id, true)
	if errors.Is(err, runstore.ErrRolloutNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	ms, err := p.cfg.Store.RolloutMembers(ctx, tx, id)
	if err != nil {
		return nil, err
	}
	return &rolloutDrive{p: p, client: client, ctx: ctx, tx: tx, r: r, ms: ms}, nil
}

// rolloutRunEnded records, in the transaction that ended it, that the run row of a rollout's
// member ended with status (final is its run.completed or run.failed), and moves the rollout
// on.
func (p *Pipeline) rolloutRunEnded(ctx context.Context, tx pgx.Tx, client *river.Client[pgx.Tx], row *runstore.Run, status string, final *contract.Event) error {
	d, err := p.lockRollout(ctx, tx, client, row.Rollout)
	if err != nil || d == nil {
		return err
	}
	m := d.member(row.Target)
	if m == nil {
		return nil
	}
	state, e := contract.MemberCompleted, (*contract.EventError)(nil)
	if status != runstore.RunCompleted {
		state = contract.MemberFailed
		e = &contract.EventError{Code: contract.CodeInternal, Message: "the run failed"}
		if final != nil && final.Error != nil {
			c := *final.Error
			c.Message = outbox.Truncate(c.Message, 2000)
			e = &c
		}
	}
	if err := d.set([]*runstore.Member{m}, state, e); err != nil {
		return err
	}
	ev := d.event(contract.KindRolloutProgress)
	ev.Message = fmt.Sprintf("%s: run %s", m.Target, state)
	d.setStatus(&ev)
	st := d.status()
	st.Member = d.memberStatus(m)
	ev.Data = mustJSON(st)
	d.evs = append(d.evs, ev)
	return d.run(ctx, tx)
}

// rolloutRunRetried records that an operator retried the failed run of a rollout's member: the
// member runs again (and counts as running, not failed, in its wave).
func (p *Pipeline) rolloutRunRetried(ctx context.Context, tx pgx.Tx, row *runstore.Run) error {
	d, err := p.lockRollout(ctx, tx, p.client, row.Rollout)
	if err != nil || d == nil {
		return err
	}
	if m := d.member(row.Target); m != nil && m.State == contract.MemberFailed {
		return d.set([]*runstore.Member{m}, contract.MemberRunning, nil)
	}
	return nil
}

// ResumeRollout resumes a halted rollout: its failed members' runs are retried (retry) or
// skipped, and the rollout goes on. It implements part of the operator surface (package api).
func (p *Pipeline) ResumeRollout(ctx context.Context, id string, retry bool, reason string) (contract.RolloutStatus, error) {
	var st contract.RolloutStatus
	err := p.inTx(ctx, func(tx pgx.Tx) error {
		d, err := p.lockRollout(ctx, tx, p.client, id)
		if err != nil {
			return err
		}
		if d == nil {
			return fmt.Errorf("%w: %s", runstore.ErrRolloutNotFound, id)
		}
		if d.r.State != contract.RolloutHalted {
			return &StateError{Run: "", Rollout: id, Action: "resume", Status: d.r.State, Allowed: []string{contract.RolloutHalted}}
		}
		var failed []*runstore.Member
		for i := range d.ms {
			if d.ms[i].State == contract.MemberFailed {
				failed = append(failed, &d.ms[i])
			}
		}
		what := "skipped"
		if retry {
			what = "retried"
			for _, m := range failed {
				row, err := p.lockRun(ctx, tx, contract.RunID(m.Target, d.r.RequestID))
				if errors.Is(err, runstore.ErrRunNotFound) {
					continue // a member refused before its run was recorded: it starts anew
				}
				if err != nil {
					return err
				}
				if row.Status != runstore.RunFailed {
					continue
				}
				rc, err := p.newRunContext(row)
				if err != nil {
					return err
				}
				if err := p.retryRun(ctx, tx, p.client, rc, "by an operator resuming rollout "+id+reasonSuffix(reason)+": the run plans again and resumes from its failed phase"); err != nil {
					return err
				}
			}
			err = d.set(failed, contract.MemberRunning, nil)
		} else {
			err = d.set(failed, contract.MemberSkipped, nil)
		}
		if err != nil {
			return err
		}
		d.r.State = contract.RolloutRunning
		ev := d.event(contract.KindRolloutResumed)
		ev.Message = fmt.Sprintf("resumed by an operator%s: %d failed target(s) %s", reasonSuffix(reason), len(failed), what)
		d.evs = append(d.evs, ev)
		if err := d.run(ctx, tx); err != nil {
			return err
		}
		st = d.status()
		return nil
	})
	return st, err
}

// RolloutStatus reads a rollout's status.
func (p *Pipeline) RolloutStatus(ctx context.Context, id string) (contract.RolloutStatus, error) {
	q := p.cfg.Store.Pool
	r, err := p.cfg.Store.GetRollout(ctx, q, id, false)
	if errors.Is(err, runstore.ErrRolloutNotFound) {
		return contract.RolloutStatus{}, fmt.Errorf("%w: %s", runstore.ErrRolloutNotFound, id)
	}
	if err != nil {
		return contract.RolloutStatus{}, err
	}
	ms, err := p.cfg.Store.RolloutMembers(ctx, q, id)
	if err != nil {
		return contract.RolloutStatus{}, err
	}
	d := &rolloutDrive{p: p, r: r, ms: ms}
	return d.status(), nil
}

// rolloutDrive is a rollout locked in a transaction, its members, and the events that report
// what the transaction does to it.
type rolloutDrive struct {
	p      *Pipeline
	client *river.Client[pgx.Tx]
	ctx    context.Context
	tx     pgx.Tx
	r      *runstore.Rollout
	ms     []runstore.Member
	evs    []contract.Event
}

func (d *rolloutDrive) member(target string) *runstore.Member {
	for i := range d.ms {
		if d.ms[i].Target == target {
			return &d.ms[i]
		}
	}
	return nil
}

// set changes the state of members, in the table and in d.
func (d *rolloutDrive) set(ms []*runstore.Member, state string, e *contract.EventError) error {
	if len(ms) == 0 {
		return nil
	}
	targets := make([]string, len(ms))
	for i, m := range ms {
		targets[i] = m.Target
		m.State, m.Error = state, e
	}
	return d.p.cfg.Store.SetMemberStates(d.ctx, d.tx, d.r.ID, targets, state, e)
}

// run moves the rollout on as far as it goes now, then writes it and its events.
func (d *rolloutDrive) run(ctx context.Context, tx pgx.Tx) error {
	if err := d.step(ctx, tx); err != nil {
		return err
	}
	if err := d.p.cfg.Store.UpdateRollout(ctx, tx, d.r); err != nil {
		return err
	}
	return d.p.record(ctx, tx, d.evs...)
}

// step starts what may start: members of the current wave up to the rollout's concurrency,
// the next wave (after its pause) once a wave has ended; or halts or completes the rollout.
func (d *rolloutDrive) step(ctx context.Context, tx pgx.Tx) error {
	pol := d.r.Policy
	for d.r.State == contract.RolloutRunning {
		if d.r.NextWaveAt != nil {
			if time.Now().Before(*d.r.NextWaveAt) {
				return nil // the rollout's job starts the wave
			}
			d.r.NextWaveAt = nil
			d.r.Wave++
			d.evs = append(d.evs, d.waveStarted())
		}
		var pending []*runstore.Member
		running, wave, failed, active := 0, 0, 0, 0
		for i := range d.ms {
			m := &d.ms[i]
			if m.State == contract.MemberRunning {
				running++
			}
			if m.Wave != d.r.Wave {
				continue
			}
			wave++
			switch m.State {
			case contract.MemberPending:
				pending = append(pending, m)
			case contract.MemberFailed:
				failed++
			case contract.MemberRunning:
				active++
			}
		}
		if !d.r.DryRun && !pol.Tolerates(failed, wave, d.isCanary()) {
			d.r.State = contract.RolloutHalted
			ev := d.event(contract.KindRolloutHalted)
			ev.Message = d.haltedMessage(failed, wave)
			d.setStatus(&ev)
			d.evs = append(d.evs, ev)
			return nil
		}
		if len(pending) > 0 {
			n := min(len(pending), max(pol.MaxConcurrent, 1)-running)
			if n <= 0 {
				return nil
			}
			ended := false
			for _, m := range pending[:n] {
				done, err := d.start(ctx, tx, m)
				if err != nil {
					return err
				}
				ended = ended || done
			}
			if !ended {
				return nil
			}
			continue // a member's run had ended before: look again
		}
		if active > 0 {
			return nil
		}
		last := d.r.Wave >= d.r.Waves-1
		if !last && pol.PauseMS > 0 {
			at := time.Now().Add(time.Duration(pol.PauseMS) * time.Millisecond)
			d.r.NextWaveAt = &at
		}
		wc := d.event(contract.KindWaveCompleted, strconv.Itoa(d.r.Wave))
		wc.Message = fmt.Sprintf("%s completed", d.waveName())
		if !last && pol.PauseMS > 0 {
			wc.Message += fmt.Sprintf("; the next wave starts in %s", time.Duration(pol.PauseMS)*time.Millisecond)
		}
		d.setStatus(&wc)
		d.evs = append(d.evs, wc)
		if last {
			d.r.State = contract.RolloutCompleted
			done := d.event(contract.KindRolloutCompleted)
			st := d.status()
			done.Message = fmt.Sprintf("rollout completed: %d completed, %d failed, %d skipped of %d target(s)", st.Completed, st.Failed, st.Skipped, st.Total)
			d.setStatus(&done)
			d.evs = append(d.evs, done)
			return nil
		}
		if pol.PauseMS > 0 {
			at := *d.r.NextWaveAt
			if d.client == nil {
				return errors.New("jobs: no River client")
			}
			_, err := d.client.InsertTx(ctx, tx, RolloutArgs{RolloutID: d.r.ID, Group: d.r.Group},
				&river.InsertOpts{Queue: d.p.cfg.Queue, ScheduledAt: at, MaxAttempts: d.p.cfg.riverMaxAttempts()})
			if err != nil {
				return fmt.Errorf("insert the rollout's next wave: %w", err)
			}
			return nil
		}
		d.r.Wave++
		d.evs = append(d.evs, d.waveStarted())
	}
	return nil
}

// start records and admits the run of a pending member; done reports that the member's run
// had ended before (a request for its target with the same id, recorded earlier).
func (d *rolloutDrive) start(ctx context.Context, tx pgx.Tx, m *runstore.Member) (done bool, err error) {
	store := d.p.cfg.Store
	run := &runstore.Run{
		ID: contract.RunID(m.Target, d.r.RequestID), RequestID: d.r.RequestID, Target: m.Target,
		Direction: d.r.Direction, DryRun: d.r.DryRun, Request: d.r.Request, RequestSHA256: d.r.RequestSHA256,
		Rollout: d.r.ID,
	}
	if err := store.LockTarget(ctx, tx, m.Target); err != nil {
		return false, err
	}
	created, ex, err := store.InsertRun(ctx, tx, run)
	if err != nil {
		return false, err
	}
	if created {
		accepted := outbox.New(refOf(run), contract.KindRunAccepted)
		accepted.Message = fmt.Sprintf("%s accepted as a member of rollout %s of group %s", d.r.Direction, d.r.ID, d.r.Group)
		if err := d.p.record(ctx, tx, accepted); err != nil {
			return false, err
		}
		if err := d.set([]*runstore.Member{m}, contract.MemberRunning, nil); err != nil {
			return false, err
		}
		return false, d.p.admitNext(ctx, tx, d.client, m.Target)
	}
	// The target has a run for this request id already.
	if ex.RequestSHA256 != run.RequestSHA256 {
		msg := fmt.Sprintf("request id %s was used before on target %s with a different body (run %s): this member is not run; publish the rollout with a new id", d.r.RequestID, m.Target, ex.ID)
		return true, d.set([]*runstore.Member{m}, contract.MemberFailed, &contract.EventError{Code: contract.CodeDuplicateRequest, Message: msg})
	}
	if err := store.LinkRun(ctx, tx, ex.ID, d.r.ID); err != nil {
		return false, err
	}
	switch ex.Status {
	case runstore.RunCompleted:
		return true, d.set([]*runstore.Member{m}, contract.MemberCompleted, nil)
	case runstore.RunFailed:
		e := (&runContext{row: ex}).failure().Error
		return true, d.set([]*runstore.Member{m}, contract.MemberFailed, &e)
	}
	return false, d.set([]*runstore.Member{m}, contract.MemberRunning, nil)
}

func (d *rolloutDrive) isCanary() bool { return d.r.Canary && d.r.Wave == 0 }

func (d *rolloutDrive) waveName() string {
	if d.isCanary() {
		return "the canary"
	}
	return fmt.Sprintf("wave %d of %d", d.r.Wave+1, d.r.Waves)
}

func (d *rolloutDrive) waveStarted() contract.Event {
	ev := d.event(contract.KindWaveStarted, strconv.Itoa(d.r.Wave))
	n := 0
	for _, m := range d.ms {
		if m.Wave == d.r.Wave {
			n++
		}
	}
	ev.Message = fmt.Sprintf("%s: %d target(s)", d.waveName(), n)
	d.setStatus(&ev)
	return ev
}

func (d *rolloutDrive) haltedMessage(failed, wave int) string {
	if d.isCanary() {
		return fmt.Sprintf("rollout halted: %d of %d canary target(s) failed; no other target starts until an operator resumes it (retrying or skipping the failed ones)", failed, wave)
	}
	return fmt.Sprintf("rollout halted: %d of %d target(s) of %s failed, past its threshold; no new target starts until an operator resumes it (retrying or skipping the failed ones)", failed, wave, d.waveName())
}

// event returns an event of the rollout: its id is new for each (the rollout counts them).
func (d *rolloutDrive) event(kind string, idParts ...string) contract.Event {
	d.r.Seq++
	ref := outbox.RunRef{Run: d.r.ID, RequestID: d.r.RequestID, Target: d.r.Group}
	return outbox.New(ref, kind, append([]string{strconv.Itoa(d.r.Seq)}, idParts...)...)
}

// setStatus gives ev the rollout's status as it is now.
func (d *rolloutDrive) setStatus(ev *contract.Event) { ev.Data = mustJSON(d.status()) }

func (d *rolloutDrive) status() contract.RolloutStatus {
	st := contract.RolloutStatus{
		Rollout: d.r.ID, Group: d.r.Group, RequestID: d.r.RequestID, State: d.r.State, DryRun: d.r.DryRun,
		Wave: d.r.Wave, Waves: d.r.Waves, Canary: d.r.Canary, Total: len(d.ms), Policy: d.r.Policy,
		NextWaveAt: d.r.NextWaveAt,
	}
	for i := range d.ms {
		m := &d.ms[i]
		if m.Wave == d.r.Wave {
			st.WaveSize++
		}
		switch m.State {
		case contract.MemberPending:
			st.Pending++
		case contract.MemberRunning:
			st.Running++
		case contract.MemberCompleted:
			st.Completed++
		case contract.MemberFailed:
			st.Failed++
			if len(st.Failures) < maxListedFailures {
				st.Failures = append(st.Failures, *d.memberStatus(m))
			}
		case contract.MemberSkipped:
			st.Skipped++
		}
	}
	return st
}

// maxListedFailures bounds the failed members a status lists (its failed count has them all).
const maxListedFailures = 100

func (d *rolloutDrive) memberStatus(m *runstore.Member) *contract.RolloutMember {
	return &contract.RolloutMember{Target: m.Target, Run: contract.RunID(m.Target, d.r.RequestID), Wave: m.Wave, State: m.State, Error: m.Error}
}
