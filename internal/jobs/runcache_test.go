package jobs

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/queue"
)

func TestRunCacheEvictsTheLeastRecentlyUsedAndStaysBounded(t *testing.T) {
	t.Parallel()
	c := newRunCache(2)
	rc := func(id string) *runContext { return &runContext{row: &queue.Run{ID: id}} }
	c.put(rc("a"))
	c.put(rc("b"))
	require.NotNil(t, c.get("a")) // a is now the most recent
	c.put(rc("c"))                // evicts b
	require.Nil(t, c.get("b"))
	require.NotNil(t, c.get("a"))
	require.NotNil(t, c.get("c"))
	c.drop("a")
	require.Nil(t, c.get("a"))
	for i := range 1000 {
		c.put(rc(fmt.Sprint(i)))
		c.put(rc(fmt.Sprint(i))) // a repeated put does not grow anything
		c.drop(fmt.Sprint(i - 1))
	}
	require.LessOrEqual(t, c.lru.Len(), 2)
	require.Equal(t, c.lru.Len(), len(c.byID))
}
