package jobs

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/confiture-io/confiture-worker/internal/contract"
)

func TestRequestCacheEvictsTheLeastRecentlyUsedAndStaysBounded(t *testing.T) {
	t.Parallel()
	c := newRunCache(2)
	req := func(id string) *contract.Request { return &contract.Request{ID: id} }
	c.put("a", "sa", req("a"))
	c.put("b", "sb", req("b"))
	require.NotNil(t, c.get("a", "sa")) // a is now the most recent
	c.put("c", "sc", req("c"))          // evicts b
	require.Nil(t, c.get("b", "sb"))
	require.NotNil(t, c.get("a", "sa"))
	require.NotNil(t, c.get("c", "sc"))
	require.Nil(t, c.get("a", "other"), "a request is only served for the body it was decoded from")
	c.drop("a")
	require.Nil(t, c.get("a", "sa"))
	for i := range 1000 {
		c.put(fmt.Sprint(i), "s", req(fmt.Sprint(i)))
		c.put(fmt.Sprint(i), "s", req(fmt.Sprint(i))) // a repeated put does not grow anything
		c.drop(fmt.Sprint(i - 1))
	}
	require.LessOrEqual(t, c.lru.Len(), 2)
	require.Equal(t, c.lru.Len(), len(c.byID))
}
