package broadcast_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// TestTopTopics: the topics with the most subscribers come first, ties by
// name, with their latest seq and epoch, and at most n of them, out of the
// count of all topics held.
func TestTopTopics(t *testing.T) {
	ts := startHub(t, broadcast.Config{Shards: 3}, wsconn.Config{})

	// Topic "t<i>" gets i subscribers over several connections (and so
	// several shards); "quiet" has history and none.
	for i := 1; i <= 4; i++ {
		topic := fmt.Sprintf("t%d", i)
		for range i {
			c := mustDial(t, "gorilla", ts.addr, "topics="+topic)
			t.Cleanup(c.Close)
			mustReadSubscribed(t, c, topic)
		}
	}
	c := mustDial(t, "coder", ts.addr, "topics=t2,t4")
	t.Cleanup(c.Close)
	mustReadSubscribed(t, c, "t2")
	mustReadSubscribed(t, c, "t4")
	ts.publish(t, "quiet", `1`)
	ts.publish(t, "quiet", `2`)
	seq := ts.publish(t, "t3", `{"x":1}`)

	top, total := ts.hub.TopTopics(3)
	assert.Equal(t, 5, total)
	require.Len(t, top, 3)
	names := []string{top[0].Name, top[1].Name, top[2].Name}
	// t2 and t3 both have 3 subscribers: by name.
	assert.Equal(t, []string{"t4", "t2", "t3"}, names)
	assert.Equal(t, []int{5, 3, 3}, []int{top[0].Subscribers, top[1].Subscribers, top[2].Subscribers})
	assert.Equal(t, seq, top[2].Seq)
	assert.NotEmpty(t, top[2].Epoch)

	all, total := ts.hub.TopTopics(100)
	assert.Equal(t, 5, total)
	require.Len(t, all, 5)
	assert.Equal(t, "quiet", all[4].Name)
	assert.Equal(t, 0, all[4].Subscribers)
	assert.Equal(t, uint64(2), all[4].Seq)

	none, total := ts.hub.TopTopics(0)
	assert.Empty(t, none)
	assert.Equal(t, 5, total)
}
