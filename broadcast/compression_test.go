package broadcast_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// A broadcast goes compressed to the subscribers that negotiated
// permessage-deflate and plain to the others, compressed once per message
// however many shards and subscribers take it; a small one goes plain to
// all.
func TestCompressedBroadcast(t *testing.T) {
	ts := startHub(t, broadcast.Config{Shards: 4, CompressMinBytes: 200}, wsconn.Config{})
	kinds := []string{"gorilla", "coder", "gorilla-deflate", "coder-deflate"}
	var subs []wsClient
	deflating := 0
	for i := range 16 {
		kind := kinds[i%len(kinds)]
		c := mustDial(t, kind, ts.addr, "topics=c")
		mustReadSubscribed(t, c, "c")
		subs = append(subs, c)
		if strings.HasSuffix(kind, "-deflate") {
			deflating++
		}
	}
	require.EqualValues(t, deflating, ts.hub.Stats().CompressedClients)

	big := `{"prices":[` + strings.Repeat(`{"bid":101.5,"ask":101.7},`, 40) + `{"bid":0}]}`
	small := `{"bid":1}`
	const messages = 3
	for range messages {
		ts.publish(t, "c", big)
	}
	ts.publish(t, "c", small)
	for _, c := range subs {
		for i := range messages {
			f := mustReadMessage(t, c, "c", uint64(i+1))
			assert.JSONEq(t, big, string(f.Data), "message %d", i)
		}
		assert.JSONEq(t, small, string(mustReadMessage(t, c, "c", messages+1).Data))
	}
	st := ts.hub.Stats()
	assert.EqualValues(t, messages, st.MessagesCompressed, "once per message")
	assert.EqualValues(t, messages*deflating, st.CompressedDeliveries)
	assert.Positive(t, st.CompressedBytesSaved)
	assert.EqualValues(t, (messages+1)*len(subs), st.Deliveries)
	t.Logf("saved %d bytes over %d compressed deliveries", st.CompressedBytesSaved, st.CompressedDeliveries)

	for _, c := range subs {
		c.Close()
	}
	require.Eventually(t, func() bool { return ts.hub.Stats().CompressedClients == 0 }, waitTimeout, time.Millisecond)
}

// With no subscriber that takes compressed frames, nothing is compressed;
// a negative CompressMinBytes never compresses.
func TestCompressionLazy(t *testing.T) {
	big := `{"x":"` + strings.Repeat("a", 1000) + `"}`
	for _, tc := range []struct {
		name     string
		kind     string
		minBytes int
	}{
		{"no compressed subscriber", "gorilla", 0},
		{"off", "gorilla-deflate", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts := startHub(t, broadcast.Config{CompressMinBytes: tc.minBytes}, wsconn.Config{})
			c := mustDial(t, tc.kind, ts.addr, "topics=z")
			mustReadSubscribed(t, c, "z")
			ts.publish(t, "z", big)
			assert.JSONEq(t, big, string(mustReadMessage(t, c, "z", 1).Data))
			st := ts.hub.Stats()
			assert.Zero(t, st.MessagesCompressed)
			assert.Zero(t, st.CompressedDeliveries)
		})
	}
}

// TestCompressMinBytesIsPayload: CompressMinBytes is the message's payload,
// the envelope as a subscriber reads it, not its frame (README said frame):
// one of exactly that many bytes is compressed, one a byte shorter is not.
func TestCompressMinBytesIsPayload(t *testing.T) {
	const min = 300
	ts := startHub(t, broadcast.Config{CompressMinBytes: min}, wsconn.Config{})
	plain := mustDial(t, "gorilla", ts.addr, "topics=z")
	mustReadSubscribed(t, plain, "z")
	deflating := mustDial(t, "gorilla-deflate", ts.addr, "topics=z")
	mustReadSubscribed(t, deflating, "z")
	data := func(n int) string { return `"` + strings.Repeat("x", n) + `"` }

	// The envelope's length for data of 100 bytes, read plain.
	ts.publish(t, "z", data(100))
	base := len(mustReadMessage(t, plain, "z", 1).Raw) - 100
	mustReadMessage(t, deflating, "z", 1)
	require.Zero(t, ts.hub.Stats().MessagesCompressed)

	for seq, tc := range []struct {
		payload    int
		compressed uint64 // MessagesCompressed after it
	}{{min - 1, 0}, {min, 1}} {
		ts.publish(t, "z", data(tc.payload-base))
		f := mustReadMessage(t, plain, "z", uint64(seq+2))
		require.Len(t, f.Raw, tc.payload)
		mustReadMessage(t, deflating, "z", uint64(seq+2))
		assert.Equal(t, tc.compressed, ts.hub.Stats().MessagesCompressed, "a payload of %d bytes", tc.payload)
	}
}
