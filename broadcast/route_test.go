package broadcast

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPublishOnlyToShardsWithSubscribers: a publish posts to the shards
// that hold subscribers of its topic, not to every shard (each publish cost
// O(shards), 6.5–15 µs at 64, all under the topic's lock).
func TestPublishOnlyToShardsWithSubscribers(t *testing.T) {
	h := New(Config{Shards: 16})
	defer h.Close()
	puts := func() (n uint64) {
		for _, s := range h.shards {
			s.inbox.mu.Lock()
			n += s.inbox.puts
			s.inbox.mu.Unlock()
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
