package broadcast

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestPublishOnlyToShardsWithSubscribers: a publish posts to the shards
// that hold subscribers of its topic, not to every shard (each publish cost
// O(shards), 6.5–15 µs at 64, all under the topic's lock).
func TestPublishOnlyToShardsWithSubscribers(t *testing.T) {
	// Shards not started: what is posted to them stays in their inboxes.
	h := newHub(Config{Shards: 16, InboxLen: 1 << 10})
	puts := func() (n int) {
		for _, s := range h.shards {
			n += len(s.inbox.ops)
		}
		return n
	}
	before := puts()
	for range 100 {
		_, err := h.Publish("nobody", []byte(`1`))
		require.NoError(t, err)
	}
	require.Equal(t, before, puts(), "a topic without subscribers posts to no shard")

	tp, err := h.lockTopic("one")
	require.NoError(t, err)
	tp.join(h.shards[3]) // as a subscribe does, under the lock
	tp.mu.Unlock()
	before = puts()
	for range 100 {
		_, err := h.Publish("one", []byte(`1`))
		require.NoError(t, err)
	}
	require.Equal(t, before+100, puts(), "one subscriber: one shard per publish")
}

// BenchmarkPublishShards: the cost of a publish, to a topic with one
// subscriber, as the shards grow. Only the shard that holds the subscriber
// is posted to.
func BenchmarkPublishShards(b *testing.B) {
	for _, n := range []int{1, 4, 64} {
		b.Run(fmt.Sprintf("shards=%d", n), func(b *testing.B) {
			h := New(Config{Shards: n, HistorySize: -1})
			defer h.Close()
			tp, err := h.lockTopic("bench")
			require.NoError(b, err)
			tp.join(h.shards[0])
			tp.mu.Unlock()
			data := []byte(`{"payload":"0123456789012345678901234567890123456789"}`)
			b.ReportAllocs()
			b.ResetTimer()
			for range b.N {
				if _, err := h.Publish("bench", data); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestFanoutLatency: a publish to a topic with subscribers on two shards is
// observed once, when the second has queued it; one to a topic without
// subscribers is not observed.
func TestFanoutLatency(t *testing.T) {
	h := New(Config{Shards: 4})
	defer h.Close()
	tp, err := h.lockTopic("two")
	require.NoError(t, err)
	tp.join(h.shards[1])
	tp.join(h.shards[2])
	tp.mu.Unlock()
	_, err = h.Publish("none", []byte(`1`))
	require.NoError(t, err)
	for range 10 {
		_, err = h.Publish("two", []byte(`1`))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		_, count, _ := h.FanoutLatency()
		return count == 10
	}, 5*time.Second, time.Millisecond)
	cumulative, count, sum := h.FanoutLatency()
	require.Len(t, cumulative, len(LatencyBounds))
	require.LessOrEqual(t, cumulative[len(cumulative)-1], count)
	require.Positive(t, sum)
	time.Sleep(50 * time.Millisecond)
	_, count, _ = h.FanoutLatency()
	require.Equal(t, uint64(10), count, "one observation per publish")
}
