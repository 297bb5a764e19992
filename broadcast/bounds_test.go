package broadcast_test

import (
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
