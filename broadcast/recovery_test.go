package broadcast_test

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// TestRecoveryAfterReconnect: subscribe, read up to seq k, disconnect,
// publish m more, reconnect with since=topic:k: subscribed with
// recovered:true and seq k first, then exactly those m, in order, then live
// messages with no gap and no duplicate.
func TestRecoveryAfterReconnect(t *testing.T) {
	ts := startHub(t, broadcast.Config{}, wsconn.Config{})
	for _, kind := range clientKinds {
		t.Run(kind, func(t *testing.T) {
			topic := "rec-" + kind
			const k, m, live = 5, 7, 4
			c := mustDial(t, kind, ts.addr, "topics="+topic)
			r := mustReadSubscribed(t, c, topic)
			require.Zero(t, r.Seq, "a new topic's seq")
			for i := 1; i <= k; i++ {
				seq := ts.publish(t, topic, jsonData(i, 40))
				require.Equal(t, uint64(i), seq)
				f := mustReadMessage(t, c, topic, seq)
				require.JSONEq(t, jsonData(i, 40), string(f.Data))
			}
			c.Close()
			for i := k + 1; i <= k+m; i++ {
				_, err := ts.postSeq(topic, []byte(jsonData(i, 40)))
				require.NoError(t, err)
			}

			c = mustDial(t, kind, ts.addr, fmt.Sprintf("topics=%s&since=%s:%d@%s", topic, topic, k, r.Epoch))
			r = mustReadSubscribed(t, c, topic)
			require.True(t, r.Recovered, "%s", r)
			require.Equal(t, uint64(k), r.Seq, "the reply's seq is since: the replay follows it")
			for i := k + 1; i <= k+m; i++ {
				f := mustReadMessage(t, c, topic, uint64(i))
				require.JSONEq(t, jsonData(i, 40), string(f.Data))
			}
			for i := k + m + 1; i <= k+m+live; i++ {
				require.Equal(t, uint64(i), ts.publish(t, topic, jsonData(i, 40)))
				mustReadMessage(t, c, topic, uint64(i))
			}

			// Nothing missed: recovered, nothing replayed.
			c.Close()
			last := uint64(k + m + live)
			c = mustDial(t, kind, ts.addr, fmt.Sprintf("topics=%s&since=%s:%d", topic, topic, last))
			r = mustReadSubscribed(t, c, topic)
			require.True(t, r.Recovered, "%s", r)
			require.Equal(t, last, r.Seq)
			require.Equal(t, last+1, ts.publish(t, topic, `"next"`))
			mustReadMessage(t, c, topic, last+1)
		})
	}
}

// TestRecoveryWhilePublishing reconnects with since again and again while a
// publisher keeps publishing: the messages seen over all connections are
// exactly 1, 2, 3, ... with no gap and no duplicate.
func TestRecoveryWhilePublishing(t *testing.T) {
	for _, kind := range clientKinds {
		t.Run(kind, func(t *testing.T) {
			ts := startHub(t, broadcast.Config{HistorySize: 100_000}, wsconn.Config{})
			const topic = "busy"
			var published atomic.Uint64
			stop := make(chan struct{})
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 1; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					seq, err := ts.hub.Publish(topic, []byte(jsonData(i, 60)))
					if !assert.NoError(t, err) || !assert.Equal(t, uint64(i), seq) {
						return
					}
					published.Store(seq)
					time.Sleep(200 * time.Microsecond) // a steady stream, not a flood
				}
			}()
			defer func() { close(stop); wg.Wait() }()

			c := mustDial(t, kind, ts.addr, "topics="+topic)
			r := mustReadSubscribed(t, c, topic)
			next := r.Seq + 1
			replayed := 0
			for cycle := range 6 {
				for range 30 {
					f := mustReadMessage(t, c, topic, next)
					require.JSONEq(t, jsonData(int(next), 60), string(f.Data))
					next++
				}
				c.Close()
				// Let the publisher get ahead, so the reconnect has
				// something to recover.
				target := next + 10
				require.Eventually(t, func() bool { return published.Load() >= target },
					waitTimeout, time.Millisecond, "publisher stalled")
				since := next - 1
				c = mustDial(t, kind, ts.addr, fmt.Sprintf("topics=%s&since=%s:%d", topic, topic, since))
				f := mustRead(t, c)
				require.Equal(t, "subscribed", f.Type, "cycle %d: %s", cycle, f)
				require.True(t, f.Recovered, "cycle %d: %s", cycle, f)
				require.Equal(t, since, f.Seq, "cycle %d: the reply's seq is since", cycle)
				// The replay, at least what was published before the
				// reconnect, then live messages, with no seam between.
				for next <= target {
					mustReadMessage(t, c, topic, next)
					next++
				}
				replayed += int(target - since)
			}
			// And live messages go on after the last reply.
			for range 30 {
				mustReadMessage(t, c, topic, next)
				next++
			}
			assert.GreaterOrEqual(t, ts.hub.Stats().Replayed, uint64(replayed))
		})
	}
}

// TestRecoveryTooOld: with HistorySize 10, a since older than history gets
// recovered:false with the current seq and an epoch, and no replay; the
// boundary is exact.
func TestRecoveryTooOld(t *testing.T) {
	for _, kind := range clientKinds {
		t.Run(kind, func(t *testing.T) {
			ts := startHub(t, broadcast.Config{HistorySize: 10}, wsconn.Config{})
			const topic = "old"
			for i := 1; i <= 30; i++ {
				ts.publish(t, topic, strconv.Itoa(i))
			}
			// History holds 21..30.
			cases := []struct {
				since     uint64
				recovered bool
			}{
				{0, false},
				{5, false},
				{19, false},
				{20, true},
				{25, true},
				{30, true},
				{99, false}, // ahead of the topic: another epoch's seq
			}
			var epoch string
			for _, tc := range cases {
				c := mustDial(t, kind, ts.addr, fmt.Sprintf("topics=%s&since=%s:%d", topic, topic, tc.since))
				r := mustReadSubscribed(t, c, topic)
				require.Equal(t, tc.recovered, r.Recovered, "since %d: %s", tc.since, r)
				if tc.recovered {
					require.Equal(t, tc.since, r.Seq, "since %d: %s", tc.since, r)
					for i := tc.since + 1; i <= 30; i++ {
						f := mustReadMessage(t, c, topic, i)
						require.Equal(t, strconv.Itoa(int(i)), string(f.Data))
					}
				} else {
					require.Equal(t, uint64(30), r.Seq, "since %d: %s", tc.since, r)
				}
				if epoch == "" {
					epoch = r.Epoch
				}
				require.Equal(t, epoch, r.Epoch, "the topic's epoch stays while it lives")
				c.Close()
			}

			// Unrecovered, the client still gets the live messages after
			// the current seq.
			c := mustDial(t, kind, ts.addr, fmt.Sprintf("topics=%s&since=%s:3", topic, topic))
			r := mustReadSubscribed(t, c, topic)
			require.False(t, r.Recovered)
			require.Equal(t, epoch, r.Epoch)
			seq := ts.publish(t, topic, `"live"`)
			require.Equal(t, r.Seq+1, seq)
			mustReadMessage(t, c, topic, seq)
		})
	}
}

// TestRecoverySubscribeMessage: the same with the subscribe message
// {"type":"subscribe","topic":"a","since":k}, and with an epoch.
func TestRecoverySubscribeMessage(t *testing.T) {
	ts := startHub(t, broadcast.Config{HistorySize: 10}, wsconn.Config{})
	for _, kind := range clientKinds {
		t.Run(kind, func(t *testing.T) {
			topic := "msg-" + kind
			for i := 1; i <= 12; i++ {
				ts.publish(t, topic, strconv.Itoa(i))
			}
			c := mustDial(t, kind, ts.addr, "")

			// History holds 3..12.
			mustWrite(t, c, subscribeSinceMsg(topic, 4))
			r := mustReadSubscribed(t, c, topic)
			require.True(t, r.Recovered, "%s", r)
			require.Equal(t, uint64(4), r.Seq)
			for i := uint64(5); i <= 12; i++ {
				mustReadMessage(t, c, topic, i)
			}
			epoch := r.Epoch
			require.Equal(t, uint64(13), ts.publish(t, topic, "13"))
			mustReadMessage(t, c, topic, 13)

			// Resubscribe with the right epoch: recovered.
			require.Empty(t, unsubscribeSync(t, c, topic, topic+"-barrier-1"))
			ts.publish(t, topic, "14")
			ts.publish(t, topic, "15")
			mustWrite(t, c, fmt.Sprintf(`{"type":"subscribe","topic":%q,"since":13,"epoch":%q}`, topic, epoch))
			r = mustReadSubscribed(t, c, topic)
			require.True(t, r.Recovered, "%s", r)
			require.Equal(t, uint64(13), r.Seq)
			require.Equal(t, epoch, r.Epoch)
			mustReadMessage(t, c, topic, 14)
			mustReadMessage(t, c, topic, 15)

			// With another epoch: not recovered, nothing replayed.
			require.Empty(t, unsubscribeSync(t, c, topic, topic+"-barrier-2"))
			ts.publish(t, topic, "16")
			mustWrite(t, c, fmt.Sprintf(`{"type":"subscribe","topic":%q,"since":15,"epoch":"not-%s"}`, topic, epoch))
			f := mustRead(t, c)
			require.Equal(t, "subscribed", f.Type, "want no replay for another epoch, got %s", f)
			require.False(t, f.Recovered, "%s", f)
			require.Equal(t, uint64(16), f.Seq)
			require.Equal(t, epoch, f.Epoch)

			// Older than history, in the message form.
			require.Empty(t, unsubscribeSync(t, c, topic, topic+"-barrier-3"))
			mustWrite(t, c, subscribeSinceMsg(topic, 1))
			f = mustRead(t, c)
			require.Equal(t, "subscribed", f.Type, "want no replay for a since older than history, got %s", f)
			require.False(t, f.Recovered, "%s", f)
			require.Equal(t, uint64(16), f.Seq)
			require.Equal(t, uint64(17), ts.publish(t, topic, "17"))
			mustReadMessage(t, c, topic, 17)
		})
	}
}

// TestRecoveryLargerThanQueue: a client that reads as fast as it can
// recovers any backlog that history holds, also one larger than
// MaxQueueBytes: with the defaults (1000 messages of history, a 1 MiB
// queue) that is any full-history backlog of messages over about 1 KiB.
func TestRecoveryLargerThanQueue(t *testing.T) {
	cases := []struct {
		name       string
		policy     broadcast.Policy
		history    int // messages
		queueBytes int
		size       int // bytes per message
	}{
		{"3 times the queue", broadcast.Disconnect, 100, 64 << 10, 2 << 10},
		{"3 times the queue, drop policy", broadcast.Drop, 100, 64 << 10, 2 << 10},
		{"defaults", broadcast.Disconnect, 0, 0, 2 << 10},
		{"60 times the queue", broadcast.Disconnect, 1000, 64 << 10, 4 << 10},
	}
	for _, tc := range cases {
		for _, kind := range clientKinds {
			t.Run(tc.name+"/"+kind, func(t *testing.T) {
				ts := startHub(t, broadcast.Config{HistorySize: tc.history, SlowConsumer: tc.policy},
					wsconn.Config{MaxQueueBytes: tc.queueBytes})
				const topic = "backlog"
				n := ts.hub.Config().HistorySize
				for i := 1; i <= n; i++ {
					ts.publish(t, topic, jsonData(i, tc.size))
				}
				c := mustDial(t, kind, ts.addr, "topics="+topic+"&since="+topic+":0")
				r := mustReadSubscribed(t, c, topic)
				assert.True(t, r.Recovered)
				assert.Zero(t, r.Seq)
				for i := 1; i <= n; i++ {
					f, err := readFrame(c)
					require.NoError(t, err, "reading replayed message %d of %d (close code %d); hub stats %+v",
						i, n, closeCode(err), ts.hub.Stats())
					require.True(t, f.isMessage(), "want replayed message %d of %d, got %s", i, n, f)
					require.Equal(t, uint64(i), f.Seq)
				}
				assert.Zero(t, ts.hub.Stats().SlowDisconnects)
				assert.Zero(t, ts.hub.Stats().Drops)
			})
		}
	}
}

// TestTopicExpiry: a topic with neither subscribers nor history is
// forgotten once its history has expired, and comes back with a new epoch
// and seqs from 1; a topic with subscribers keeps its seqs after its history
// expired.
func TestTopicExpiry(t *testing.T) {
	ts := startHub(t, broadcast.Config{HistoryAge: 40 * time.Millisecond}, wsconn.Config{})
	for _, kind := range clientKinds {
		t.Run(kind, func(t *testing.T) {
			gone, kept := "gone-"+kind, "kept-"+kind
			c := mustDial(t, kind, ts.addr, "topics="+gone+","+kept)
			r := mustReadSubscribed(t, c, gone)
			oldEpoch := r.Epoch
			mustReadSubscribed(t, c, kept)
			for i := uint64(1); i <= 3; i++ {
				require.Equal(t, i, ts.publish(t, gone, "1"))
				require.Equal(t, i, ts.publish(t, kept, "1"))
				mustReadMessage(t, c, gone, i)
				mustReadMessage(t, c, kept, i)
			}
			require.Empty(t, unsubscribeSync(t, c, gone, "barrier-"+kind))
			// Left: kept and the barrier, both with a subscriber.
			require.Eventually(t, func() bool { return ts.hub.Stats().Topics == 2 },
				waitTimeout, 5*time.Millisecond, "the unsubscribed topic is forgotten")

			// kept, which has a subscriber, keeps its seqs.
			require.Equal(t, uint64(4), ts.publish(t, kept, "4"))
			mustReadMessage(t, c, kept, 4)
			c2 := mustDial(t, kind, ts.addr, "topics="+kept+"&since="+kept+":0")
			r = mustReadSubscribed(t, c2, kept)
			require.Equal(t, uint64(4), r.Seq)

			// gone: a new epoch, seqs from 1 again; since=3 from the old
			// epoch is not recovered.
			mustWrite(t, c, fmt.Sprintf(`{"type":"subscribe","topic":%q,"since":3,"epoch":%q}`, gone, oldEpoch))
			r = mustReadSubscribed(t, c, gone)
			assert.False(t, r.Recovered, "%s", r)
			assert.Zero(t, r.Seq, "%s", r)
			assert.NotEqual(t, oldEpoch, r.Epoch)
			require.Equal(t, uint64(1), ts.publish(t, gone, "1"))
			mustReadMessage(t, c, gone, 1)
		})
	}
}

// TestRecoveryAcrossRestart: a client that saw seqs up to 2 of topic r
// reconnects, after a restart, to a server whose new history holds 1..5. With
// since=r:2@EPOCH of the old epoch, nothing of the new history is replayed
// as if it followed the old seq 2: the reply, first, says recovered:false
// with the new epoch and the latest seq, and the next message is live. (The
// URL could not carry the epoch: the new 3..5 were replayed and
// recovered:true came back.)
func TestRecoveryAcrossRestart(t *testing.T) {
	before := startHub(t, broadcast.Config{}, wsconn.Config{})
	c := mustDial(t, "gorilla", before.addr, "topics=r")
	old := mustReadSubscribed(t, c, "r")
	before.publish(t, "r", "1")
	before.publish(t, "r", "2")
	mustReadMessage(t, c, "r", 1)
	mustReadMessage(t, c, "r", 2)
	c.Close()

	after := startHub(t, broadcast.Config{}, wsconn.Config{}) // the restarted server
	latest := uint64(0)
	for i := 1; i <= 5; i++ {
		latest = after.publish(t, "r", strconv.Itoa(i))
	}
	for _, kind := range clientKinds {
		c := mustDial(t, kind, after.addr, "topics=r&since=r:2@"+old.Epoch)
		r := mustReadSubscribed(t, c, "r")
		assert.False(t, r.Recovered, "%s", r)
		assert.Equal(t, latest, r.Seq, "%s", r)
		assert.NotEqual(t, old.Epoch, r.Epoch)
		latest = after.publish(t, "r", `"live"`)
		mustReadMessage(t, c, "r", latest) // nothing replayed before it
		c.Close()

		// With the new epoch, it recovers.
		c = mustDial(t, kind, after.addr, fmt.Sprintf("topics=r&since=r:3@%s", r.Epoch))
		r = mustReadSubscribed(t, c, "r")
		assert.True(t, r.Recovered, "%s", r)
		assert.Equal(t, uint64(3), r.Seq)
		for s := uint64(4); s <= latest; s++ {
			mustReadMessage(t, c, "r", s)
		}
		c.Close()
	}
}
