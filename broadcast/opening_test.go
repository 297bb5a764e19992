package broadcast_test

import (
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

func liveHeap() uint64 {
	var ms runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestURLReplaysHeldOneAtATime: a client that recovers many topics from
// its URL (?topics=t0,…,t99&since=t0:0,…) and does not read holds one
// replay's references and its queue limit, as one that asks with
// subscribe messages does (TestReplayFloodHeld), not every replay at once:
// each held 3.1 MB, every message of the 100 topics' history. Found by a
// helper's review.
func TestURLReplaysHeldOneAtATime(t *testing.T) {
	const (
		clients = 20
		topics  = 100
		history = 1000
		limit   = 64 << 10
	)
	ts := startHub(t, broadcast.Config{HistorySize: history, MaxSubscriptions: topics}, wsconn.Config{MaxQueueBytes: limit})
	names := make([]string, topics)
	since := make([]string, topics)
	for i := range names {
		names[i] = fmt.Sprintf("t%d", i)
		since[i] = names[i] + ":0"
		for j := 1; j <= history; j++ {
			ts.publish(t, names[i], jsonData(j, 500))
		}
	}
	target := "/ws?topics=" + strings.Join(names, ",") + "&since=" + strings.Join(since, ",")
	before := liveHeap()
	var conns []*rawClient
	for range clients {
		conns = append(conns, dialRaw(t, ts.addr, target, 4096)) // never reads
	}
	var replayed uint64
	require.Eventually(t, func() bool {
		now := ts.hub.Stats().Replayed
		settled := now == replayed && now > 0
		replayed = now
		return settled
	}, waitTimeout, 300*time.Millisecond, "the replays never settled")
	perClient := (int64(liveHeap()) - int64(before)) / clients
	t.Logf("%d messages handed to replays; live heap %d B per client that does not read", replayed, perClient)
	assert.LessOrEqual(t, replayed, uint64(clients*history*15), "messages replayed to clients that do not read")
	assert.Less(t, perClient, int64(4*limit), "heap held per client that does not read")
	assert.Equal(t, clients, broadcast.WaitingOpenings(ts.hub), "each waits with the rest of its URL")
	for _, c := range conns {
		require.NoError(t, c.conn.Close())
	}
	require.Eventually(t, func() bool { return broadcast.WaitingOpenings(ts.hub) == 0 }, waitTimeout, 10*time.Millisecond,
		"the openings of closed connections are forgotten")
}

// TestURLReplaysInOrder: a client that reads recovers every topic of its
// URL, one after another: each topic's reply, then its replay, in the
// order the URL lists them, then the user's own topic, and then it is
// served as before (a subscribe by message).
func TestURLReplaysInOrder(t *testing.T) {
	ts := startAuthHub(t, broadcast.Config{HistorySize: 100})
	for _, name := range []string{"a", "b", "c"} {
		for j := 1; j <= 30; j++ {
			ts.publish(t, name, jsonData(j, 100))
		}
	}
	c := mustAuthDial(t, "gorilla", ts.addr, "topics=a,b,c&since=a:10,b:0,c:29", authToken(t, "alice", []string{"*"}, nil, inAnHour()))
	for _, tc := range []struct {
		topic string
		since uint64
	}{{"a", 10}, {"b", 0}, {"c", 29}} {
		f := mustReadSubscribed(t, c, tc.topic)
		assert.Equal(t, tc.since, f.Seq, "%s", f)
		assert.True(t, f.Recovered, "%s", f)
		for seq := tc.since + 1; seq <= 30; seq++ {
			mustReadMessage(t, c, tc.topic, seq)
		}
	}
	mustReadSubscribed(t, c, "user:alice")
	mustWrite(t, c, subscribeMsg("d"))
	mustReadSubscribed(t, c, "d")
	assert.Zero(t, broadcast.WaitingOpenings(ts.hub), "the opening is done")
}
