package broadcast_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// sweepConfig pings after 100 ms of silence, closes after 400 ms and closes
// a frame stalled for 300 ms.
var sweepConfig = wsconn.Config{
	PingInterval: 100 * time.Millisecond,
	IdleTimeout:  400 * time.Millisecond,
	FrameTimeout: 300 * time.Millisecond,
}

// TestSweepSilentClient: a client that never answers pings gets a ping and
// then close 1001, and then EOF.
func TestSweepSilentClient(t *testing.T) {
	ts := startHub(t, broadcast.Config{}, sweepConfig)
	c := dialRaw(t, ts.addr, "/ws?topics=quiet", 0)
	f, err := c.readFrame(waitTimeout)
	require.NoError(t, err)
	r, err := parseFrame(f.Payload)
	require.NoError(t, err)
	require.Equal(t, "subscribed", r.Type)

	pings := 0
	for {
		f, err := c.readFrame(waitTimeout)
		require.NoError(t, err, "after %d pings", pings)
		if f.Op == opPing {
			pings++
			continue
		}
		require.Equal(t, opClose, f.Op, "want pings and then a close frame, got op %#x %q", f.Op, f.Payload)
		assert.Equal(t, 1001, f.closeCode(), "close frame %q", f.Payload)
		break
	}
	assert.Equal(t, 1, pings, "pinged once, then closed")
	c.requireEOF(t)
	_ = c.conn.Close()
	st := ts.srv.Stats()
	assert.Equal(t, uint64(1), st.Pings)
	assert.Equal(t, uint64(1), st.IdleCloses)
	require.Eventually(t, func() bool {
		st := ts.hub.Stats()
		return st.Clients == 0 && st.Subscriptions == 0
	}, waitTimeout, 5*time.Millisecond, "the closed client leaves the hub: %+v", ts.hub.Stats())
}

// TestSweepResponsiveClients: clients whose libraries answer pings while
// they read stay open for many idle timeouts and still get messages.
func TestSweepResponsiveClients(t *testing.T) {
	ts := startHub(t, broadcast.Config{}, sweepConfig)
	const topic = "alive"
	clients := make([]wsClient, 0, len(clientKinds))
	for _, kind := range clientKinds {
		c := mustDial(t, kind, ts.addr, "topics="+topic)
		mustReadSubscribed(t, c, topic)
		clients = append(clients, c)
	}
	// Each client reads (and so answers pings) until it has the message
	// published at the end.
	type result struct {
		f   frame
		err error
	}
	results := make(chan result, len(clients))
	for _, c := range clients {
		go func() {
			f, err := readFrame(c)
			results <- result{f, err}
		}()
	}
	// A ping goes out after 100 ms of silence, and the pong ends the
	// silence: 12 pings per client take over 1.2 s, 3 idle timeouts.
	const wantPings = 12
	require.Eventually(t, func() bool { return ts.srv.Stats().Pings >= uint64(wantPings*len(clients)) },
		waitTimeout, 10*time.Millisecond, "pings sent: %+v", ts.srv.Stats())
	assert.Zero(t, ts.srv.Stats().IdleCloses, "no idle close")
	assert.Equal(t, int64(len(clients)), ts.hub.Stats().Clients)

	seq := ts.publish(t, topic, `"still here"`)
	for range clients {
		r := <-results
		require.NoError(t, r.err)
		require.True(t, r.f.isMessage(), "%s", r.f)
		assert.Equal(t, seq, r.f.Seq)
		assert.JSONEq(t, `"still here"`, string(r.f.Data))
	}
}

// TestSweepStalledFrame: a client that sends a frame header and part of the
// payload and then stalls is closed with 1008.
func TestSweepStalledFrame(t *testing.T) {
	ts := startHub(t, broadcast.Config{}, sweepConfig)
	c := dialRaw(t, ts.addr, "/ws", 0)
	msg := []byte(subscribeMsg("stalled"))
	c.write(t, clientFrame(opText, len(msg), msg[:10]))
	for {
		f, err := c.readFrame(waitTimeout)
		require.NoError(t, err)
		if f.Op == opPing {
			continue // pings may come first; the stall is what counts
		}
		require.Equal(t, opClose, f.Op, "want a close frame, got op %#x %q", f.Op, f.Payload)
		assert.Equal(t, 1008, f.closeCode(), "close frame %q", f.Payload)
		break
	}
	c.requireEOF(t)
	assert.Zero(t, ts.hub.Stats().Subscriptions, "the half-sent subscribe did nothing")
}

// TestSweepPongKeepsRawClientOpen: a raw client that answers each ping
// with a pong, and sends nothing else, is not closed as idle.
func TestSweepPongKeepsRawClientOpen(t *testing.T) {
	ts := startHub(t, broadcast.Config{}, sweepConfig)
	c := dialRaw(t, ts.addr, "/ws", 0)
	for pings := 0; pings < 8; {
		f, err := c.readFrame(waitTimeout)
		require.NoError(t, err, "after %d pings", pings)
		require.Equal(t, opPing, f.Op, "want pings only, got op %#x %q", f.Op, f.Payload)
		c.write(t, clientFrame(opPong, len(f.Payload), f.Payload))
		pings++
	}
	// 8 pings at least 100 ms apart: over 2 idle timeouts.
	c.write(t, clientFrame(opText, len(subscribeMsg("pong")), []byte(subscribeMsg("pong"))))
	f, err := c.readFrame(waitTimeout)
	for err == nil && f.Op == opPing {
		c.write(t, clientFrame(opPong, len(f.Payload), f.Payload))
		f, err = c.readFrame(waitTimeout)
	}
	require.NoError(t, err)
	r, err := parseFrame(f.Payload)
	require.NoError(t, err)
	assert.Equal(t, "subscribed", r.Type, "%s", r)
	assert.Zero(t, ts.srv.Stats().IdleCloses)
}
