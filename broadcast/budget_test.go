package broadcast

import (
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
