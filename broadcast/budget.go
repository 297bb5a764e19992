package broadcast

import (
	"math"
	"sync"
	"sync/atomic"
)

// entryOverhead is what a history entry costs beyond its frame's bytes,
// counted against Config.MaxHistoryBytes: its ring slot (40 bytes) and its
// record in the budget's queue (16), rounded up.
const entryOverhead = 64

// historyBudget bounds the history of all topics together
// (Config.MaxHistoryBytes). Every entry a topic keeps is charged here, and
// when the sum passes the limit the oldest entries, whichever their topic,
// are dropped first.
//
// The order is a queue of records, one per entry, in the order of the
// publishes. An entry that its topic dropped on its own (its ring was full,
// or it expired) leaves its record behind: a stale record, which Topic.floor
// tells apart without the topic's lock and which is skipped or compacted
// away, so that the queue stays within twice the entries held.
//
// Lock order: a topic's lock, then mu. The evictor takes a topic's lock with
// no other lock held.
type historyBudget struct {
	limit int64

	bytes   atomic.Int64 // charged bytes of the entries held
	entries atomic.Int64 // entries held
	evicted atomic.Uint64

	mu   sync.Mutex
	recs []historyRec // recs[head:] are pending, oldest first
	head int
}

// historyRec is the record of the entry seq of topic.
type historyRec struct {
	topic *Topic
	seq   uint64
}

func newHistoryBudget(limit int64) *historyBudget {
	if limit <= 0 {
		limit = math.MaxInt64
	}
	return &historyBudget{limit: limit}
}

// charge records the entry seq of t, of size bytes, which t has just
// pushed; freed is what t dropped to make room (see history.push). t.mu is
// held.
func (b *historyBudget) charge(t *Topic, seq uint64, size int, freed historyFreed) {
	b.bytes.Add(int64(size+entryOverhead) - freed.bytes)
	b.entries.Add(1 - freed.entries)
	if b.limit == math.MaxInt64 {
		return // no bound: nothing is ever trimmed, so no order is kept
	}
	b.mu.Lock()
	if b.head > 0 && len(b.recs)-b.head < b.head {
		// More than half is consumed: move the rest down.
		n := copy(b.recs, b.recs[b.head:])
		clear(b.recs[n:])
		b.recs, b.head = b.recs[:n], 0
	}
	if pending := len(b.recs) - b.head; pending > 1024 && int64(pending) > 2*b.entries.Load() {
		b.compactLocked()
	}
	b.recs = append(b.recs, historyRec{topic: t, seq: seq})
	b.mu.Unlock()
}

// release uncharges what a topic dropped on its own (history.expire). t.mu
// is held.
func (b *historyBudget) release(freed historyFreed) {
	b.bytes.Add(-freed.bytes)
	b.entries.Add(-freed.entries)
}

// compactLocked drops the stale records. b.mu is held.
func (b *historyBudget) compactLocked() {
	live := b.recs[:0]
	for _, r := range b.recs[b.head:] {
		if r.seq >= r.topic.floor.Load() {
			live = append(live, r)
		}
	}
	clear(b.recs[len(live):])
	b.recs, b.head = live, 0
}

// pop returns the oldest pending record.
func (b *historyBudget) pop() (historyRec, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.head == len(b.recs) {
		return historyRec{}, false
	}
	r := b.recs[b.head]
	b.recs[b.head] = historyRec{}
	b.head++
	if b.head == len(b.recs) {
		b.recs, b.head = b.recs[:0], 0
	}
	return r, true
}

// trim drops the oldest entries of all history until the charge is within
// the limit. It holds no lock when called: it takes each topic's in turn.
func (b *historyBudget) trim() {
	for b.bytes.Load() > b.limit {
		r, ok := b.pop()
		if !ok {
			return
		}
		t := r.topic
		if r.seq < t.floor.Load() {
			continue // stale
		}
		t.mu.Lock()
		if freed := t.history.dropOldest(r.seq); freed.entries > 0 {
			t.floor.Store(t.history.floor(t.seq))
			b.release(freed)
			b.evicted.Add(uint64(freed.entries))
		}
		t.mu.Unlock()
	}
}
