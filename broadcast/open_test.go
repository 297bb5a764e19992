package broadcast_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// TestURLSubscribesAnsweredWithUpgrade: the replies to the URL's subscribes,
// an error among them, go out in the 101's write, in the URL's order; a
// recovery's replay and the live messages follow its reply, with no gap
// (the replies no longer come through the shard, which queues them).
func TestURLSubscribesAnsweredWithUpgrade(t *testing.T) {
	for _, kind := range []string{"gorilla", "coder-deflate"} {
		t.Run(kind, func(t *testing.T) {
			ts := startHub(t, broadcast.Config{MaxTopics: 3}, wsconn.Config{})
			ts.publish(t, "b", `{"n":1}`)

			before := ts.srv.Stats().Writes
			c := mustDial(t, kind, ts.addr, "topics=a,b,c,d")
			mustReadSubscribed(t, c, "a")
			b := mustReadSubscribed(t, c, "b")
			assert.Equal(t, uint64(1), b.Seq)
			mustReadSubscribed(t, c, "c")
			mustReadError(t, c, broadcast.CodeTooManyTopics) // d: a, b and c are the 3 topics
			assert.Equal(t, uint64(1), ts.srv.Stats().Writes-before, "writes for the 101 and the four answers")

			r := mustDial(t, kind, ts.addr, "topics=a,b&since=b:0")
			mustReadSubscribed(t, r, "a")
			rb := mustReadSubscribed(t, r, "b")
			require.True(t, rb.Recovered, "reply %s", rb)
			assert.Equal(t, uint64(0), rb.Seq)
			mustReadMessage(t, r, "b", 1)

			ts.publish(t, "b", `{"n":2}`)
			mustReadMessage(t, c, "b", 2)
			mustReadMessage(t, r, "b", 2)
		})
	}
}
