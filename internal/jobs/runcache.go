package jobs

import (
	"container/list"
	"sync"
)

// runCache keeps the runs this process has loaded, least recently used first out, so that the
// next phase of a run does not read and decode its request again. A run's request and plan never
// change once planned; its step is known to a job on its first attempt (see Pipeline.runFor).
type runCache struct {
	mu   sync.Mutex
	byID map[string]*list.Element // of *runContext
	lru  *list.List               // front: most recently used
	max  int
}

func newRunCache(max int) *runCache {
	return &runCache{byID: map[string]*list.Element{}, lru: list.New(), max: max}
}

func (c *runCache) get(id string) *runContext {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byID[id]
	if !ok {
		return nil
	}
	c.lru.MoveToFront(e)
	return e.Value.(*runContext)
}

func (c *runCache) put(rc *runContext) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[rc.row.ID]; ok {
		e.Value = rc
		c.lru.MoveToFront(e)
		return
	}
	c.byID[rc.row.ID] = c.lru.PushFront(rc)
	for c.lru.Len() > c.max {
		oldest := c.lru.Back()
		c.lru.Remove(oldest)
		delete(c.byID, oldest.Value.(*runContext).row.ID)
	}
}

func (c *runCache) drop(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.byID[id]; ok {
		c.lru.Remove(e)
		delete(c.byID, id)
	}
}
