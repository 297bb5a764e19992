package broadcast_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// TestErrorRepliesCut: an error echoes at most --max-topic-bytes of the
// input. A 60 KiB topic of DEL bytes came back 5 times larger (quoted,
// then JSON-escaped), past the queue limit; so did an unknown type.
func TestErrorRepliesCut(t *testing.T) {
	ts := startHub(t, broadcast.Config{}, wsconn.Config{})
	c := dialRaw(t, ts.addr, "/ws", 0)
	junk := strings.Repeat("\x7f", 60<<10)
	for _, msg := range []string{
		`{"type":"subscribe","topic":"` + junk + `"}`,
		`{"type":"` + junk + `","topic":"a"}`,
		`{"type":"unsubscribe","topic":"` + junk + `"}`,
	} {
		c.write(t, clientFrame(opText, len(msg), []byte(msg)))
		f, err := c.readFrame(waitTimeout)
		require.NoError(t, err)
		m, err := parseFrame(f.Payload)
		require.NoError(t, err)
		assert.Equal(t, "error", m.Type, "%.200s", f.Payload)
		assert.Less(t, len(f.Payload), 2<<10, "error of %.200s", f.Payload)
	}
}

// TestByteRate: with ByteRate, a message costs its share of the bytes per
// second: large publishes are refused (rate_limited) long before the
// message rate would be reached.
func TestByteRate(t *testing.T) {
	ts := startHub(t, broadcast.Config{MessageRate: 10, MessageBurst: 20, ByteRate: 10 << 10}, wsconn.Config{})
	c := mustDial(t, "gorilla", ts.addr, "")
	// 18 KiB costs 18 messages at 10 messages and 10 KiB per second:
	// nearly the whole burst of 20.
	data := `"` + strings.Repeat("z", 18<<10) + `"`
	mustWrite(t, c, publishMsg("big", data))
	f := mustRead(t, c)
	require.Equal(t, "published", f.Type, "%s", f)
	mustWrite(t, c, publishMsg("big", data))
	mustReadError(t, c, broadcast.CodeRateLimited)
	assert.Equal(t, uint64(1), ts.hub.Stats().RateLimited)
}

// TestMaxHistoryBytes: history over all topics stays within
// MaxHistoryBytes, the oldest entries going first whichever their topic.
// 4,000 publishes of 32 KiB to distinct topics kept 4,000 topics and
// +159 MiB of live heap.
func TestMaxHistoryBytes(t *testing.T) {
	const (
		limit = 1 << 20
		size  = 32 << 10
		n     = 200 // 6.4 MB published
	)
	ts := startHub(t, broadcast.Config{MaxHistoryBytes: limit}, wsconn.Config{})
	for i := range n {
		ts.publish(t, fmt.Sprintf("flood-%d", i), jsonData(i, size))
	}
	st := ts.hub.Stats()
	t.Logf("after %d publishes of %d bytes: %+v", n, size, st)
	assert.LessOrEqual(t, st.HistoryBytes, int64(limit), "history bytes")
	assert.Greater(t, st.HistoryBytes, int64(limit-2*size), "history keeps what fits")
	assert.Positive(t, st.HistoryEvicted)

	// The oldest went first: the first topic's message is gone, the last
	// topic's is there.
	c := mustDial(t, "gorilla", ts.addr, fmt.Sprintf("topics=flood-0,flood-%d&since=flood-0:0,flood-%d:0", n-1, n-1))
	r := mustReadSubscribed(t, c, "flood-0")
	assert.False(t, r.Recovered, "the oldest history was dropped: %s", r)
	r = mustReadSubscribed(t, c, fmt.Sprintf("flood-%d", n-1))
	assert.True(t, r.Recovered, "the newest history is kept: %s", r)
	mustReadMessage(t, c, fmt.Sprintf("flood-%d", n-1), 1)

	// Oldest first across topics: a topic published to before another
	// loses its messages first.
	for i := 1; i <= 20; i++ {
		ts.publish(t, "old", jsonData(i, size))
	}
	for i := 1; i <= 20; i++ {
		ts.publish(t, "new", jsonData(i, size))
	}
	c = mustDial(t, "gorilla", ts.addr, "topics=old,new&since=old:0,new:0")
	assert.False(t, mustReadSubscribed(t, c, "old").Recovered, "old's first messages are gone")
	assert.True(t, mustReadSubscribed(t, c, "new").Recovered, "new's 20 (640 KiB) fit")
}

// TestMaxTopics: a publish or subscribe that would create a topic past
// MaxTopics is refused, over WebSocket and HTTP, and counted; existing
// topics go on.
func TestMaxTopics(t *testing.T) {
	ts := startHub(t, broadcast.Config{MaxTopics: 3}, wsconn.Config{})
	for _, name := range []string{"a", "b", "c"} {
		ts.publish(t, name, `1`)
	}
	_, err := ts.hub.Publish("d", []byte(`1`))
	require.ErrorIs(t, err, broadcast.ErrTooManyTopics)

	c := mustDial(t, "gorilla", ts.addr, "")
	mustWrite(t, c, subscribeSinceMsg("e", 0))
	f := mustReadError(t, c, broadcast.CodeTooManyTopics)
	assert.Equal(t, "e", f.Topic)
	mustWrite(t, c, publishMsg("f", `1`))
	mustReadError(t, c, broadcast.CodeTooManyTopics)
	// The connection was held for the subscribe's replay, and released.
	mustWrite(t, c, subscribeMsg("a"))
	mustReadSubscribed(t, c, "a")

	code, body, err := ts.post("g", []byte(`1`))
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, code, "%s", body)
	assert.Equal(t, uint64(4), ts.hub.Stats().TopicsRefused)
	assert.Equal(t, 3, ts.hub.Stats().Topics)
	ts.publish(t, "b", `2`)
}
