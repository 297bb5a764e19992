package broadcast_test

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// TestSlowConsumer: a raw client subscribes and never reads, with a tiny
// TCP receive window, on a server with a 64 KiB write queue, while 4 KiB
// messages are published. A normal subscriber next to it gets every message
// under either policy. With Disconnect the slow one is closed (4008) and
// counted; with Drop it stays connected, misses exactly the messages counted
// as drops, and gets messages again once it reads.
func TestSlowConsumer(t *testing.T) {
	for _, policy := range []broadcast.Policy{broadcast.Disconnect, broadcast.Drop} {
		for _, kind := range clientKinds {
			t.Run(policy.String()+"/"+kind, func(t *testing.T) {
				testSlowConsumer(t, policy, kind)
			})
		}
	}
}

func testSlowConsumer(t *testing.T, policy broadcast.Policy, kind string) {
	const (
		topic       = "firehose"
		size        = 4 << 10
		maxMessages = 4000 // 16 MiB: far more than any socket buffer
	)
	ts := startHub(t, broadcast.Config{SlowConsumer: policy}, wsconn.Config{MaxQueueBytes: 64 << 10})

	normal := mustDial(t, kind, ts.addr, "topics="+topic)
	mustReadSubscribed(t, normal, topic)
	slow := dialRawSubscribed(t, ts.addr, topic)

	// The normal subscriber reads in a goroutine of its own and reports
	// each seq; the publisher goes in lock-step with it, so the normal
	// subscriber's queue never holds more than one message.
	seqs := make(chan uint64, maxMessages+100)
	readErr := make(chan error, 1)
	go func() {
		next := uint64(1)
		for {
			f, err := readFrame(normal)
			if err == nil && (!f.isMessage() || f.Seq != next || f.Topic != topic) {
				err = fmt.Errorf("normal subscriber: want message %d, got %s", next, f)
			}
			if err != nil {
				readErr <- err
				return
			}
			seqs <- f.Seq
			next++
		}
	}()
	publishData := func(data string) uint64 {
		t.Helper()
		seq := ts.publish(t, topic, data)
		select {
		case got := <-seqs:
			require.Equal(t, seq, got)
		case err := <-readErr:
			require.NoError(t, err, "message %d; hub stats %+v", seq, ts.hub.Stats())
		case <-time.After(waitTimeout):
			t.Fatalf("normal subscriber did not get message %d", seq)
		}
		return seq
	}
	publish := func(i int) uint64 {
		t.Helper()
		return publishData(jsonData(i, size))
	}
	hit := func() bool {
		st := ts.hub.Stats()
		if policy == broadcast.Disconnect {
			return st.SlowDisconnects > 0
		}
		return st.Drops > 0
	}

	var last uint64
	for i := 1; i <= maxMessages && !hit(); i++ {
		last = publish(i)
	}
	require.True(t, hit(), "no slow consumer after %d messages of %d bytes: %+v", last, size, ts.hub.Stats())
	for i := 0; i < 20; i++ {
		last = publish(int(last) + 1)
	}
	t.Logf("%s: slow consumer hit after about %d messages; stats %+v", policy, last-20, ts.hub.Stats())

	switch policy {
	case broadcast.Disconnect:
		// The slow one reads a prefix of the messages, 1..j, and then
		// the close frame 4008 and EOF (or, had the close timeout passed
		// first, as it can on a loaded machine, a reset: the server
		// resets a connection released with output its peer never read).
		next := uint64(1)
		for {
			f, err := slow.readFrame(waitTimeout)
			if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
				t.Logf("slow consumer: %v without a close frame after message %d", err, next-1)
				break
			}
			require.NoError(t, err, "slow consumer, after message %d", next-1)
			if f.Op == opClose {
				assert.Equal(t, int(broadcast.CloseSlowConsumer), f.closeCode(), "close frame %q", f.Payload)
				slow.requireEOF(t)
				break
			}
			require.Equal(t, opText, f.Op)
			m, err := parseFrame(f.Payload)
			require.NoError(t, err)
			require.Equal(t, next, m.Seq, "the slow consumer gets a gapless prefix")
			next++
		}
		assert.Less(t, next-1, last, "the slow consumer cannot have got every message")
		assert.Equal(t, uint64(1), ts.hub.Stats().SlowDisconnects)
		_ = slow.conn.Close()
		require.Eventually(t, func() bool {
			st := ts.hub.Stats()
			return st.Clients == 1 && st.Subscriptions == 1
		}, waitTimeout, 5*time.Millisecond, "the evicted client leaves the hub")

	case broadcast.Drop:
		// The slow one is still connected: it drains what was queued for
		// it, with a dropped notice for each run of messages it missed,
		// then gets a marker published once every queue is empty.
		const markerData = `{"marker":true}`
		var (
			next    = uint64(1) // the seq the slow one must hear of next
			missing uint64
			done    = make(chan error, 1)
		)
		go func() {
			done <- readAccounted(slow, topic, &next, &missing, func(m frame) bool { return string(m.Data) == markerData })
		}()
		require.Eventually(t, func() bool { return ts.srv.QueuedBytes() == 0 }, waitTimeout, 5*time.Millisecond,
			"the slow consumer's queue drains once it reads")
		marker := publishData(markerData)
		select {
		case err := <-done:
			require.NoError(t, err)
		case <-time.After(waitTimeout):
			t.Fatal("the slow consumer did not get the marker")
		}
		require.Equal(t, marker+1, next)
		st := ts.hub.Stats()
		assert.Positive(t, missing, "the slow consumer missed messages")
		assert.Equal(t, st.Drops, missing, "every drop is told, once")
		assert.Zero(t, st.SlowDisconnects)
		assert.Equal(t, int64(2), st.Clients)
	}
}

// readAccounted reads c's frames of topic until stop accepts a message,
// checking that every seq from *next on is told exactly once and in order:
// as a message, or in the run of a dropped notice, whose seqs it adds to
// *missing. *next ends as the seq after the last told.
func readAccounted(c *rawClient, topic string, next, missing *uint64, stop func(frame) bool) error {
	for {
		f, err := c.readFrame(waitTimeout)
		if err == nil && f.Op != opText {
			err = fmt.Errorf("frame op %#x (%q): want only text", f.Op, f.Payload)
		}
		var m frame
		if err == nil {
			m, err = parseFrame(f.Payload)
		}
		if err != nil {
			return fmt.Errorf("after seq %d: %w", *next-1, err)
		}
		if m.Topic != topic {
			return fmt.Errorf("after seq %d: %s: want topic %q", *next-1, m, topic)
		}
		switch {
		case m.isMessage():
			if m.Seq != *next {
				return fmt.Errorf("message %d, want %d: a loss not told, or told twice", m.Seq, *next)
			}
			*next++
			if stop(m) {
				return nil
			}
		case m.Type == "dropped":
			if m.From != *next || m.To < m.From {
				return fmt.Errorf("%s after seq %d", m, *next-1)
			}
			*missing += m.To - m.From + 1
			*next = m.To + 1
			if stop(m) {
				return nil
			}
		default:
			return fmt.Errorf("after seq %d: %s", *next-1, m)
		}
	}
}

// TestDroppedLastMessage: under the Drop policy, a subscriber whose queue
// was full when the last messages were published is told of them once its
// queue empties, with no later message to show the gap: a dropped notice
// covering them. (It was never told.)
func TestDroppedLastMessage(t *testing.T) {
	const topic = "last"
	ts := startHub(t, broadcast.Config{SlowConsumer: broadcast.Drop}, wsconn.Config{MaxQueueBytes: 32 << 10})
	slow := dialRawSubscribed(t, ts.addr, topic)

	var last uint64
	for i := 1; i <= 4000 && ts.hub.Stats().Drops == 0; i++ {
		last = ts.publish(t, topic, jsonData(i, 4<<10))
	}
	require.Positive(t, ts.hub.Stats().Drops, "no drops")
	for range 10 {
		last = ts.publish(t, topic, jsonData(int(last)+1, 4<<10))
	}
	// Nothing more is published: the notice of the last ones comes from
	// the queue emptying as the client reads.
	next, missing := uint64(1), uint64(0)
	require.NoError(t, readAccounted(slow, topic, &next, &missing, func(m frame) bool {
		return m.Seq == last || m.Type == "dropped" && m.To == last
	}))
	assert.Equal(t, ts.hub.Stats().Drops, missing, "every drop is told, once")

	// And the topic goes on.
	seq := ts.publish(t, topic, `{"after":true}`)
	f, err := slow.readFrame(waitTimeout)
	require.NoError(t, err)
	m, err := parseFrame(f.Payload)
	require.NoError(t, err)
	require.True(t, m.isMessage(), "%s", m)
	require.Equal(t, seq, m.Seq)
}

// TestSlowConsumerEvictedDuringReplay: a client recovers a backlog larger
// than its socket buffers and does not read; live messages then pile up
// behind the replay until it is evicted. What it has been sent must stay a
// valid frame stream: whole messages 1..j, then close 4008 and EOF. The
// replay fills the socket in the middle of a frame, and a frame the socket
// took in part must be finished before the close frame, or the client
// reads the close frame as the rest of that frame's payload.
func TestSlowConsumerEvictedDuringReplay(t *testing.T) {
	const (
		topic = "replay"
		n     = 1500 // 6 MB of history: more than the socket buffers hold
		size  = 4001 // an odd size, so the socket fills mid-frame
	)
	ts := startHub(t, broadcast.Config{HistorySize: n}, wsconn.Config{MaxQueueBytes: 64 << 10})
	for i := 1; i <= n; i++ {
		ts.publish(t, topic, jsonData(i, size))
	}
	slow := dialRaw(t, ts.addr, "/ws?topics="+topic+"&since="+topic+":0", 4096)
	// The upgrade's 101 comes before the subscribe: wait for the replay.
	require.Eventually(t, func() bool { return ts.hub.Stats().Replayed == n }, waitTimeout, time.Millisecond,
		"the client subscribes and the whole history is replayed: %+v", ts.hub.Stats())
	// 800 KiB of live messages behind the replay: far over the limit.
	for i := n + 1; i <= n+200; i++ {
		ts.publish(t, topic, jsonData(i, size))
	}
	require.Eventually(t, func() bool { return ts.hub.Stats().SlowDisconnects > 0 },
		waitTimeout, 5*time.Millisecond, "a client that reads nothing is a slow consumer: %+v", ts.hub.Stats())

	f, err := slow.readFrame(waitTimeout)
	require.NoError(t, err)
	r, err := parseFrame(f.Payload)
	require.NoError(t, err)
	require.Equal(t, "subscribed", r.Type, "the reply comes before the replay: %s", r)
	next := uint64(1)
	for {
		f, err := slow.readFrame(waitTimeout)
		require.NoError(t, err, "frame after message %d: the stream must stay whole", next-1)
		if f.Op == opClose {
			assert.Equal(t, int(broadcast.CloseSlowConsumer), f.closeCode(), "close frame %q", f.Payload)
			break
		}
		require.Equal(t, opText, f.Op, "after message %d: frame op %#x, payload %.80q", next-1, f.Op, f.Payload)
		m, err := parseFrame(f.Payload)
		require.NoError(t, err, "after message %d", next-1)
		require.True(t, m.isMessage(), "%s", m)
		require.Equal(t, next, m.Seq)
		next++
	}
	slow.requireEOF(t)
	assert.Less(t, next-1, uint64(n), "the client cannot have got the whole replay")
}

// TestSlowConsumerDropKeepsReplies: under Drop, a client whose queue is
// full still gets its subscribed and unsubscribed replies. A skipped
// message shows as a seq gap; a skipped reply would show as nothing, and a
// client waiting for it would hang. The flood's messages are smaller than
// the replies (long topic names), so the queue sits just under its limit,
// still read from, with no room for a reply.
func TestSlowConsumerDropKeepsReplies(t *testing.T) {
	long := func(name string) string { return name + "." + strings.Repeat("x", 100) }
	ts := startHub(t, broadcast.Config{SlowConsumer: broadcast.Drop}, wsconn.Config{MaxQueueBytes: 16 << 10})
	// flood publishes until done or n messages, and reports whether done.
	flood := func(n int, done func(broadcast.Stats) bool) bool {
		for i := range n {
			if done(ts.hub.Stats()) {
				return true
			}
			ts.publish(t, "f", strconv.Itoa(i))
		}
		return done(ts.hub.Stats())
	}
	// Whether a reply finds the queue full depends on timing, so several
	// clients in turn try. A reply takes the queue over its limit, and the
	// server then stops reading until the client drains it: the second
	// request is read only then, and one client tests one reply.
	tested := 0
	for round := range 6 {
		slow := dialRaw(t, ts.addr, "/ws?topics=f,"+long("old"), 4096)
		for range 2 {
			f, err := slow.readFrame(waitTimeout)
			require.NoError(t, err)
			r, err := parseFrame(f.Payload)
			require.NoError(t, err)
			require.Equal(t, "subscribed", r.Type, "%s", r)
		}
		st := ts.hub.Stats()
		require.True(t, flood(1_000_000, func(now broadcast.Stats) bool { return now.Drops >= st.Drops+100 }),
			"round %d: the queue never filled: %+v", round, ts.hub.Stats())
		for _, msg := range []string{subscribeMsg(long("new")), unsubscribeMsg(long("old"))} {
			slow.write(t, clientFrame(opText, len(msg), []byte(msg)))
		}
		// The first request is answered while the queue is full, unless the
		// queue happened to sit exactly at its limit, which stops reading.
		if flood(200_000, func(now broadcast.Stats) bool { return now.ClientMessages > st.ClientMessages }) {
			tested++
			drops := ts.hub.Stats().Drops
			flood(1_000_000, func(now broadcast.Stats) bool { return now.Drops >= drops+100 })
		}

		var replies []string
		for len(replies) < 2 {
			f, err := slow.readFrame(waitTimeout)
			require.NoError(t, err, "round %d: replies so far: %v", round, replies)
			m, err := parseFrame(f.Payload)
			require.NoError(t, err)
			if m.Type != "" && m.Type != "dropped" {
				replies = append(replies, m.Type+" "+m.Topic)
			}
		}
		require.Equal(t, []string{"subscribed " + long("new"), "unsubscribed " + long("old")}, replies, "round %d", round)
		require.NoError(t, slow.conn.Close())
	}
	t.Logf("%d of 6 clients had a request answered while their queue was full", tested)
	require.Positive(t, tested, "no request was answered while the queue was full")
}

// dialRawSubscribed opens a raw client on topic with a 4 KiB receive
// window, a slow reader, and reads its subscribed reply.
func dialRawSubscribed(t *testing.T, addr, topic string) *rawClient {
	t.Helper()
	c := dialRaw(t, addr, "/ws?topics="+topic, 4096)
	f, err := c.readFrame(waitTimeout)
	require.NoError(t, err)
	r, err := parseFrame(f.Payload)
	require.NoError(t, err)
	require.Equal(t, "subscribed", r.Type, "%s", r)
	return c
}
