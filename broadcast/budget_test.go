package broadcast

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestHistoryBudgetRecordsBounded: entries a topic drops on its own (its
// ring is full) leave stale records, which are compacted away: the queue
// stays within twice the entries held, plus a little.
func TestHistoryBudgetRecordsBounded(t *testing.T) {
	h := New(Config{HistorySize: 10, Shards: 1})
	defer h.Close()
	for range 20_000 {
		_, err := h.Publish("one", []byte(`1`))
		require.NoError(t, err)
	}
	b := h.budget
	b.mu.Lock()
	pending := len(b.recs) - b.head
	b.mu.Unlock()
	assert.Equal(t, int64(10), b.entries.Load())
	assert.LessOrEqual(t, pending, 2*10+1024+1, "records pending")
	assert.Equal(t, int64(10*(len(compile("one", 20_000, []byte(`1`)))+entryOverhead)), b.bytes.Load(), "bytes held")
}

// liveRecords counts the pending records of b whose entry its topic still
// holds. Nothing may publish meanwhile.
func liveRecords(b *historyBudget) (n int64) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for _, r := range b.recs[b.head:] {
		if r.seq >= r.topic.floor.Load() && r.seq <= r.topic.seq {
			n++
		}
	}
	return n
}

// TestHistoryBudgetConcurrentTrims: publishers to one topic trim at once.
// A trim that popped a later record but took the topic's lock first dropped
// nothing (its entry was not the oldest), and that entry was left with no
// record: the budget could never evict it again, nor any later one of the
// topic, and history stayed far over the limit (found in review: 50 times
// over).
func TestHistoryBudgetConcurrentTrims(t *testing.T) {
	data := []byte(`"xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"`)
	per := int64(len(compile("hot", 1000, data)) + entryOverhead)
	limit := 20 * per
	h := New(Config{HistorySize: 1000, Shards: 1, MaxHistoryBytes: limit})
	defer h.Close()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 2000 {
				_, err := h.Publish("hot", data)
				assert.NoError(t, err)
			}
		})
	}
	wg.Wait()
	b := h.budget
	assert.Equal(t, b.entries.Load(), liveRecords(b), "every entry held has its record")
	assert.LessOrEqual(t, b.bytes.Load(), limit, "history bytes")
	_, err := h.Publish("other", data)
	require.NoError(t, err)
	other, err := h.topic("other")
	require.NoError(t, err)
	other.mu.Lock()
	defer other.mu.Unlock()
	assert.Equal(t, 1, other.history.n, "another topic's publish keeps its entry")
}

// TestHistoryRingShrinks: a ring the budget has mostly emptied shrinks.
func TestHistoryRingShrinks(t *testing.T) {
	var hs history
	for i := range 1000 {
		hs.push(entry{seq: uint64(i + 1), frame: []byte("x")}, 1000)
	}
	require.Equal(t, 1000, len(hs.ring))
	hs.dropOldest(990)
	assert.Equal(t, 10, hs.n)
	assert.LessOrEqual(t, len(hs.ring), 64)
	assert.Equal(t, uint64(991), hs.floor(1000))
	hs.push(entry{seq: 1001, frame: []byte("x")}, 1000)
	assert.Equal(t, 11, hs.n)
	assert.Equal(t, uint64(991), hs.floor(1001))
}
