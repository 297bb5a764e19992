package broadcast_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// TestReplayFloodHeld: clients that each send, at once and without reading,
// 50 subscribes that recover a topic's whole history (500 KB), each
// followed by an unsubscribe. Every replay was queued past the limit
// (exempt from it), and a turn handled all 100 messages of its read: 20
// clients held 1,000 replays, about 500 MB of queued bytes. Now a replay is charged against the queue limit and the
// connection handles nothing more until it is queued: each client holds
// one replay's references and its limit of bytes. A client that then reads
// gets every reply and every replayed message, in order.
func TestReplayFloodHeld(t *testing.T) {
	const (
		clients = 20
		pairs   = 50
		history = 500
		limit   = 64 << 10
		topic   = "r"
	)
	ts := startHub(t, broadcast.Config{HistorySize: history}, wsconn.Config{MaxQueueBytes: limit})
	for i := 1; i <= history; i++ {
		ts.publish(t, topic, jsonData(i, 1000))
	}
	var burst []byte
	for range pairs {
		for _, m := range []string{subscribeSinceMsg(topic, 0), unsubscribeMsg(topic)} {
			burst = append(burst, clientFrame(0x1, len(m), []byte(m))...)
		}
	}
	cs := make([]*rawClient, clients)
	for i := range cs {
		cs[i] = dialRaw(t, ts.addr, "/ws", 4096)
		cs[i].write(t, burst)
	}

	var replayed uint64
	require.Eventually(t, func() bool {
		now := ts.hub.Stats().Replayed
		settled := now == replayed && now >= clients*history
		replayed = now
		return settled
	}, waitTimeout, 300*time.Millisecond, "the replays never settled")
	queued := ts.srv.QueuedBytes()
	t.Logf("settled: %d messages replayed, %d bytes queued", replayed, queued)
	// What the kernel's buffers take (a few MB) lets a few replays
	// through (6 of the 50 per client here); the rest wait for the client
	// to read.
	assert.LessOrEqual(t, replayed, uint64(clients*history*15), "messages replayed to clients that do not read")
	assert.LessOrEqual(t, queued, int64(clients*(limit+1024)), "bytes queued to clients that do not read")

	// The first client reads: every reply and every message, in order.
	c := cs[0]
	for p := range pairs {
		f, err := c.readFrame(waitTimeout)
		require.NoError(t, err, "pair %d", p)
		var r struct {
			Type      string
			Topic     string
			Seq       uint64
			Recovered bool
		}
		require.NoError(t, json.Unmarshal(f.Payload, &r))
		require.Equal(t, "subscribed", r.Type, "pair %d: %s", p, f.Payload)
		require.True(t, r.Recovered)
		for i := 1; i <= history; i++ {
			f, err := c.readFrame(waitTimeout)
			require.NoError(t, err, "pair %d, message %d", p, i)
			var m struct {
				Type string
				Seq  uint64
			}
			require.NoError(t, json.Unmarshal(f.Payload, &m))
			require.Empty(t, m.Type, "pair %d: want a message, got %s", p, f.Payload)
			require.Equal(t, uint64(i), m.Seq, "pair %d", p)
		}
		f, err = c.readFrame(waitTimeout)
		require.NoError(t, err, "pair %d", p)
		require.NoError(t, json.Unmarshal(f.Payload, &r))
		require.Equal(t, "unsubscribed", r.Type, "pair %d: %s", p, f.Payload)
	}
}
