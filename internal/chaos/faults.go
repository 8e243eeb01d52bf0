package chaos

import (
	"errors"
	"fmt"
	"syscall"
	"time"
)

// inject strikes with f and counts it.
func (e *schedule) inject(f Fault) {
	err := e.strike(f)
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case err == nil:
		e.res.Faults[f.Kind]++
	case errors.Is(err, errNoCandidate):
		e.res.Skipped[f.Kind]++
	default:
		e.res.Skipped[f.Kind]++
		e.res.Notes = append(e.res.Notes, fmt.Sprintf("fault %s at %s failed: %v", f.Kind, f.At, err))
	}
	if err != nil {
		_, _ = fmt.Fprintf(e.harnessLog, "%8.3fs fault %s not injected: %v\n", time.Since(e.start).Seconds(), f, err)
	}
}

// strike does what f says.
func (e *schedule) strike(f Fault) error {
	switch f.Kind {
	case FaultSIGKILL, FaultSIGTERM:
		sig := syscall.SIGKILL
		if f.Kind == FaultSIGTERM {
			sig = syscall.SIGTERM
		}
		s := e.pickLive(f.Pick)
		if s == nil {
			return errNoCandidate
		}
		defer s.release()
		p := s.current()
		e.logf("fault %s: worker %d (pid %d); back after %s", f, s.idx, p.cmd.Process.Pid, f.Delay.Round(time.Millisecond))
		s.stop(sig)
		time.Sleep(f.Delay)
		return s.ensure(time.Now().Add(time.Minute))

	case FaultPoint:
		s := e.pickAny(f.Pick)
		if s == nil {
			return errNoCandidate
		}
		defer s.release()
		spec := fmt.Sprintf("%s=kill@%d", f.Point, f.N)
		e.logf("fault %s: worker %d restarts with %s", f, s.idx, spec)
		s.stop(syscall.SIGTERM)
		if err := s.launch(spec, f.Delay/3); err != nil {
			e.logf("worker %d: %v; starting it clean", s.idx, err)
			return s.ensure(time.Now().Add(time.Minute))
		}
		return nil

	case FaultCancelJob:
		ctx, cancel := qctx()
		defer cancel()
		rows, err := e.queue.Query(ctx, `SELECT id, kind, state::text, args::text FROM confiture_river.river_job
			WHERE kind LIKE 'confiture\_%' AND state NOT IN ('completed', 'cancelled', 'discarded') ORDER BY id`)
		if err != nil {
			return err
		}
		type job struct {
			id                int64
			kind, state, args string
		}
		var jobs []job
		for rows.Next() {
			var j job
			if err := rows.Scan(&j.id, &j.kind, &j.state, &j.args); err != nil {
				return err
			}
			jobs = append(jobs, j)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(jobs) == 0 {
			return errNoCandidate
		}
		j := jobs[f.Pick%uint64(len(jobs))]
		e.logf("fault %s: cancel job %d %s (%s) %s", f, j.id, j.kind, j.state, j.args)
		_, err = e.river.JobCancel(ctx, j.id)
		return err

	case FaultTerminateBackend:
		ctx, cancel := qctx()
		defer cancel()
		dbs := []string{e.queueDB}
		for _, te := range e.targets {
			dbs = append(dbs, te.db)
		}
		rows, err := e.queue.Query(ctx, `SELECT pid, datname, coalesce(application_name, ''), coalesce(state, ''), left(query, 100)
			FROM pg_stat_activity WHERE datname = ANY($1) AND backend_type = 'client backend'
			AND pid <> pg_backend_pid() AND application_name IS DISTINCT FROM $2 ORDER BY pid`, dbs, harnessApp)
		if err != nil {
			return err
		}
		type backend struct {
			pid                   int
			db, app, state, query string
		}
		var bs []backend
		for rows.Next() {
			var b backend
			if err := rows.Scan(&b.pid, &b.db, &b.app, &b.state, &b.query); err != nil {
				return err
			}
			bs = append(bs, b)
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(bs) == 0 {
			return errNoCandidate
		}
		// Two times in three, a backend in the middle of something, if one is: most are idle
		// connections of a pool.
		var busy []backend
		for _, b := range bs {
			if b.state != "idle" {
				busy = append(busy, b)
			}
		}
		if len(busy) > 0 && (f.Pick>>32)%3 != 0 {
			bs = busy
		}
		b := bs[f.Pick%uint64(len(bs))]
		e.logf("fault %s: terminate backend %d of %s (%s, %s): %q", f, b.pid, e.dbLabel(b.db), b.app, b.state, b.query)
		_, err = e.queue.Exec(ctx, `SELECT pg_terminate_backend($1)`, b.pid)
		return err

	case FaultNATSDown:
		if !e.nats.stop() {
			return errNoCandidate
		}
		e.logf("fault %s: NATS stopped", f)
		time.Sleep(f.Duration)
		err := e.nats.start()
		e.logf("NATS started again (%v)", err)
		return err

	case FaultTargetDown:
		te := e.targets[f.Pick%uint64(len(e.targets))]
		e.logf("fault %s: target %s unreachable", f, te.plan.Name)
		te.proxy.Down()
		time.Sleep(f.Duration)
		err := te.proxy.Up()
		e.logf("target %s reachable again (%v; still down: %v)", te.plan.Name, err, te.proxy.IsDown())
		return err

	case FaultChurn:
		s := e.slots[2]
		if !s.acquire() {
			return errNoCandidate
		}
		defer s.release()
		if s.live() {
			e.logf("fault %s: worker 2 leaves", f)
			s.stop(syscall.SIGTERM)
			return nil
		}
		e.logf("fault %s: worker 2 joins", f)
		s.stop(syscall.SIGKILL) // a worker of slot 2 that is not live (not ready yet, or dead)
		return s.ensure(time.Now().Add(30 * time.Second))
	}
	return fmt.Errorf("unknown fault kind %q", f.Kind)
}

// dbLabel names a database of the schedule: queue or a target.
func (e *schedule) dbLabel(db string) string {
	if db == e.queueDB {
		return "queue"
	}
	for _, te := range e.targets {
		if te.db == db {
			return "target " + te.plan.Name
		}
	}
	return db
}

// pickLive takes, by pick, one of the slots whose worker is live and that no fault holds.
func (e *schedule) pickLive(pick uint64) *slot {
	return e.pickSlot(pick, func(s *slot) bool { return s.cur != nil && s.cur.alive() && s.cur.ready.Load() })
}

// pickAny takes, by pick, one of the slots that no fault holds (running a worker or not).
func (e *schedule) pickAny(pick uint64) *slot {
	return e.pickSlot(pick, func(*slot) bool { return true })
}

// pickSlot takes, by pick, one of the slots that no fault holds and that eligible accepts
// (called with the slot's lock held).
func (e *schedule) pickSlot(pick uint64, eligible func(*slot) bool) *slot {
	var cands []*slot
	for _, s := range e.slots {
		s.mu.Lock()
		if !s.busy && eligible(s) {
			cands = append(cands, s)
		}
		s.mu.Unlock()
	}
	if len(cands) == 0 {
		return nil
	}
	s := cands[pick%uint64(len(cands))]
	if !s.acquire() {
		return nil
	}
	return s
}
