package jobs

import (
	"container/list"
	"context"
	"encoding/json"
	"fmt"
	"sync"
	"time"

	"github.com/confiture-io/confiture-worker/internal/contract"
	"github.com/confiture-io/confiture-worker/internal/outbox"
	"github.com/confiture-io/confiture-worker/internal/runstore"
)

// runContext is a run as a job sees it: its row (as the attempt found it), its decoded request
// and what its events need.
type runContext struct {
	row *runstore.Run
	req *contract.Request
	ref outbox.RunRef
	// byVersion indexes req.Migrations by version, once a step looks one up.
	byVersion map[string]int
}

// newRunContext pairs a run row with its request, decoding the request unless the cache has it.
func (p *Pipeline) newRunContext(row *runstore.Run) (*runContext, error) {
	req := p.runs.get(row.ID, row.RequestSHA256)
	if req == nil {
		var r contract.Request
		if err := json.Unmarshal(row.Request, &r); err != nil {
			return nil, fmt.Errorf("run %s: stored request: %w", row.ID, err)
		}
		req = &r
		p.runs.put(row.ID, row.RequestSHA256, req)
	}
	return &runContext{row: row, req: req, ref: refOf(row)}, nil
}

func refOf(row *runstore.Run) outbox.RunRef {
	return outbox.RunRef{Run: row.ID, RequestID: row.RequestID, Target: row.Target, Epoch: row.Epoch}
}

// loadRun reads a run and its request.
func (p *Pipeline) loadRun(ctx context.Context, runID string) (*runContext, error) {
	row, err := p.cfg.Store.GetRun(ctx, p.cfg.Store.Pool, runID)
	if err != nil {
		return nil, err
	}
	return p.newRunContext(row)
}

func (rc *runContext) migration(version string) (*contract.Migration, error) {
	if rc.byVersion == nil {
		rc.byVersion = make(map[string]int, len(rc.req.Migrations))
		for i := range rc.req.Migrations {
			rc.byVersion[rc.req.Migrations[i].Version] = i
		}
	}
	if i, ok := rc.byVersion[version]; ok {
		return &rc.req.Migrations[i], nil
	}
	return nil, fmt.Errorf("run %s: migration %s is not in the request", rc.row.ID, version)
}

// works reports whether step s of the run has work to do (see Works): the ddl phase always, a
// hook phase when the migration declares hooks in it.
func (rc *runContext) works(s Step) bool {
	if s.Phase == contract.PhaseDDL {
		return true
	}
	m, err := rc.migration(s.Version)
	return err != nil || hasHooks(m, s.Phase)
}

// plain reports whether migration version of the run is its ddl phase alone: it has no hooks
// in the phases the run takes it through. Its events are one migration.completed.
func (rc *runContext) plain(version string) bool {
	e, ok := rc.row.Plan.Entry(version)
	if !ok {
		return false
	}
	ss := steps(rc.row.Direction, e, rc.works)
	return len(ss) == 1 && ss[0].Phase == contract.PhaseDDL
}

// runCache keeps, for the runs this process worked on, least recently used first out, their
// decoded requests (a request never changes once recorded, and decoding a large one for each of
// its many phases would cost more than its phases) and the run row as this process's last
// advance left it, which the next attempt expects (see begin).
type runCache struct {
	mu   sync.Mutex
	byID map[string]*list.Element // of *cachedRun
	lru  *list.List               // front: most recently used
	max  int
}

type cachedRun struct {
	run, sha string
	req      *contract.Request
	// next is the run row as the last advance in this process left it; nil once taken.
	next *runstore.Run
}

func newRunCache(max int) *runCache {
	return &runCache{byID: map[string]*list.Element{}, lru: list.New(), max: max}
}

// get returns the request of run if the cache holds the one whose body hashes to sha.
func (c *runCache) get(run, sha string) *contract.Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[run]
	if !ok || e.Value.(*cachedRun).sha != sha {
		return nil
	}
	c.lru.MoveToFront(e)
	return e.Value.(*cachedRun).req
}

func (c *runCache) put(run, sha string, req *contract.Request) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[run]; ok {
		cr := e.Value.(*cachedRun)
		if cr.sha != sha {
			cr.sha, cr.next = sha, nil
		}
		cr.req = req
		c.lru.MoveToFront(e)
		return
	}
	c.byID[run] = c.lru.PushFront(&cachedRun{run: run, sha: sha, req: req})
	for c.lru.Len() > c.max {
		oldest := c.lru.Back()
		c.lru.Remove(oldest)
		delete(c.byID, oldest.Value.(*cachedRun).run)
	}
}

// expect keeps row, with its request, as the next attempt at the run is expected to find it.
// It replaces whatever was expected before; a run whose request is not cached is not kept.
func (c *runCache) expect(row runstore.Run) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[row.ID]; ok && e.Value.(*cachedRun).sha == row.RequestSHA256 {
		e.Value.(*cachedRun).next = &row
	}
}

// expected takes the row kept for the next attempt at run, if it is the attempt of job: an
// expectation serves one attempt.
func (c *runCache) expected(run string, job int64) *runstore.Run {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[run]
	if !ok {
		return nil
	}
	cr := e.Value.(*cachedRun)
	next := cr.next
	cr.next = nil
	if next == nil || next.JobID != job {
		return nil
	}
	return next
}

func (c *runCache) drop(run string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[run]; ok {
		c.lru.Remove(e)
		delete(c.byID, run)
	}
}

// progressClock holds when each running batched hook last reported progress, across the
// slices this worker runs.
type progressClock struct {
	mu   sync.Mutex
	last map[string]time.Time
}

// due reports whether a progress event for key is due at now (at most one per interval), and
// if so records now.
func (c *progressClock) due(key string, now time.Time, interval time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.last == nil {
		c.last = map[string]time.Time{}
	}
	if t, ok := c.last[key]; ok && now.Sub(t) < interval {
		return false
	}
	c.last[key] = now
	return true
}

func (c *progressClock) forget(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.last, key)
}

// failure is what the run recorded of the failure that is ending it (its on_error hooks run).
func (rc *runContext) failure() failure {
	var f failure
	if err := json.Unmarshal(rc.row.Error, &f); err != nil || f.Error.Code == "" {
		return failure{Error: contract.EventError{Code: contract.CodeInternal, Message: "unknown failure"}}
	}
	return f
}
