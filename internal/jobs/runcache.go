package jobs

import (
	"sync"
)

// runCache keeps runs that this process has loaded, so that the next phase of a run does not
// read and decode its request again. A run's request and plan never change once planned; its
// step is known to a job on its first attempt (see Pipeline.runFor).
type runCache struct {
	mu    sync.Mutex
	runs  map[string]*runContext
	order []string // insertion order, for eviction
	max   int
}

func newRunCache(max int) *runCache {
	return &runCache{runs: map[string]*runContext{}, max: max}
}

func (c *runCache) get(id string) *runContext {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.runs[id]
}

func (c *runCache) put(rc *runContext) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.runs[rc.row.ID]; !ok {
		c.order = append(c.order, rc.row.ID)
	}
	c.runs[rc.row.ID] = rc
	for len(c.runs) > c.max && len(c.order) > 0 {
		delete(c.runs, c.order[0])
		c.order = c.order[1:]
	}
}

func (c *runCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.runs, id)
}
