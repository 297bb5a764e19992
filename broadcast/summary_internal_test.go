package broadcast

import (
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTopTopicsSkipsForgotten: a topic forgotten between the copy of the
// list and its lock is not reported.
func TestTopTopicsSkipsForgotten(t *testing.T) {
	h := newHub(Config{Shards: 2})
	for _, name := range []string{"a", "b"} {
		_, err := h.topic(name)
		require.NoError(t, err)
	}
	b, err := h.topic("b")
	require.NoError(t, err)
	b.mu.Lock()
	b.dead = true // as forget leaves it, still listed here
	b.mu.Unlock()
	top, total := h.TopTopics(10)
	assert.Equal(t, 2, total)
	require.Len(t, top, 1)
	assert.Equal(t, "a", top[0].Name)
}

// BenchmarkTopTopics ranks 100,000 topics, as the live page's summary does
// at most once a second.
func BenchmarkTopTopics(b *testing.B) {
	h := newHub(Config{Shards: 4, MaxTopics: 200_000})
	for i := range 100_000 {
		t, err := h.topic("t" + strconv.Itoa(i))
		require.NoError(b, err)
		t.inShard[i%4].Add(int32(i % 97))
	}
	b.ReportAllocs()
	for b.Loop() {
		top, total := h.TopTopics(20)
		if len(top) != 20 || total != 100_000 {
			b.Fatal(len(top), total)
		}
	}
}
