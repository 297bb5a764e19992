package broadcast

import (
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout/fanout/wsconn"
	"github.com/gobwas/ws"
)

// Topic is a named stream of messages with gapless, ordered sequence numbers
// and a bounded history.
type Topic struct {
	name  string
	epoch string // changes whenever the topic's history starts afresh

	// inShard counts the subscriptions of each shard (by shard.idx): a
	// publish goes only to the shards with subscribers.
	inShard []atomic.Int32

	mu      sync.Mutex // orders publishes and subscribes
	seq     uint64     // of the last message published
	dead    bool       // dropped from the hub; look the name up again
	history history
	// watch, in a cluster, is the broker's delivery of t while it has
	// subscribers, from the start of it (Hub.startWatch). A pointer: one
	// word in every topic, and a topic per user connection with
	// authentication.
	watch *topicWatch

	// floor is the seq of the oldest entry history holds (seq+1 when it
	// holds none; the maximum once dead): the history budget's records
	// below it are stale. Written under mu, read without it.
	floor atomic.Uint64
}

// topicWatch is the broker's delivery of a topic to this node. Its fields
// are guarded by the topic's lock.
type topicWatch struct {
	w Watch // nil while it starts (Hub.startWatch)
	// ready is closed once the watch has started, or failed: deliveries
	// wait for it, subscribes meanwhile in waiters.
	ready   chan struct{}
	waiters []waiter
	// published are WebSocket publishes whose replies wait for the watch
	// to deliver their messages (see Hub.awaitDelivery).
	published []pubWaiter
}

// pubWaiter is a publish's reply waiting for seq to be delivered: done is
// closed once it has been, or once it will not be.
type pubWaiter struct {
	seq  uint64
	done chan struct{}
}

// releaseLocked closes the waits of the publishes up to seq (all of them,
// with math.MaxUint64). The topic's lock is held; the messages up to seq
// are posted to the shards already, so the replies, posted after, follow
// them.
func (tw *topicWatch) releaseLocked(seq uint64) {
	kept := tw.published[:0]
	for _, p := range tw.published {
		if p.seq <= seq {
			close(p.done)
		} else {
			kept = append(kept, p)
		}
	}
	clear(tw.published[len(kept):])
	tw.published = kept
}

// starting reports whether tw is being started. tw may be nil.
func (tw *topicWatch) starting() bool { return tw != nil && tw.w == nil }

// waiter is a subscribe waiting for its topic's watch to start (see
// Hub.startWatch): what the reply and the replay are made of once it has.
type waiter struct {
	cl    *client
	id    []byte  // the request's id, owned
	since *uint64 // as client.subscribe takes them
	epoch string
	// wait: waitAlways for a URL's recovery, which the URL's next topics
	// wait for (see openQuery); noWait otherwise.
	wait recoveryWait
}

// dropWaiter removes cl's waiting subscribe, if it has one, so that a
// watch that starts after cl has gone does not subscribe it.
func (t *Topic) dropWaiter(cl *client) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !t.watch.starting() {
		return
	}
	// slices.DeleteFunc clears the tail: no gone client stays reachable.
	t.watch.waiters = slices.DeleteFunc(t.watch.waiters, func(w waiter) bool { return w.cl == cl })
}

// join counts a subscription of a client of s. t.mu is held, so that a
// publish after it sees it.
func (t *Topic) join(s *shard) {
	t.inShard[s.idx].Add(1)
}

// leave uncounts a subscription of a client of s. A publish that misses it
// posts to s for nothing; one that still sees it posts a message that s,
// which removes the subscriber in order, does not deliver.
func (t *Topic) leave(s *shard) {
	t.inShard[s.idx].Add(-1)
}

// hasSubscribers reports whether any client subscribes to t. t.mu is held,
// so that no subscribe is on its way.
func (t *Topic) hasSubscribers() bool {
	for i := range t.inShard {
		if t.inShard[i].Load() > 0 {
			return true
		}
	}
	return false
}

// subscriberCount returns the subscriptions to t, summed over the shards
// without t.mu: a count that a subscribe or leave may change at once.
func (t *Topic) subscriberCount() int {
	n := 0
	for i := range t.inShard {
		n += int(t.inShard[i].Load())
	}
	return n
}

// Name returns the topic's name.
func (t *Topic) Name() string { return t.name }

// entry is one published message in a topic's history.
type entry struct {
	seq   uint64
	at    int64  // unix nanoseconds
	frame []byte // the compiled server frame, shared by every subscriber
}

// history is a ring of the last messages of a topic, bounded in count and
// age, and with all topics' in bytes (historyBudget).
type history struct {
	ring  []entry
	start int // index of the oldest entry
	n     int
}

// historyFreed is what history dropped: entries, and their bytes as the
// budget charges them.
type historyFreed struct {
	entries int64
	bytes   int64
}

func (f *historyFreed) add(e *entry) {
	f.entries++
	f.bytes += int64(len(e.frame) + entryOverhead)
}

// push appends e, dropping the oldest entry if the ring holds limit
// entries already, and returns what it dropped.
func (h *history) push(e entry, limit int) (freed historyFreed) {
	if limit <= 0 {
		return freed
	}
	if h.n < len(h.ring) {
		h.ring[(h.start+h.n)%len(h.ring)] = e
		h.n++
		return freed
	}
	if len(h.ring) < limit {
		// Grow by doubling up to the limit: a quiet topic keeps a small ring.
		h.resize(min(max(2*len(h.ring), 16), limit))
		h.ring[h.n] = e
		h.n++
		return freed
	}
	// Full: the newest replaces the oldest.
	freed.add(&h.ring[h.start])
	h.ring[h.start] = e
	h.start = (h.start + 1) % len(h.ring)
	return freed
}

// expire drops entries published before cutoff.
func (h *history) expire(cutoff int64) (freed historyFreed) {
	for h.n > 0 && h.ring[h.start].at < cutoff {
		h.dropFirst(&freed)
	}
	return freed
}

// dropOldest drops the entries up to seq. The budget pops a topic's
// records in seq order, so when two trims race, the one that pops the
// later record may take the topic's lock first: it drops the earlier entry
// too (its record is then stale), or the later entry would be left with no
// record, never to be evicted.
func (h *history) dropOldest(seq uint64) (freed historyFreed) {
	for h.n > 0 && h.ring[h.start].seq <= seq {
		h.dropFirst(&freed)
	}
	return freed
}

func (h *history) dropFirst(freed *historyFreed) {
	freed.add(&h.ring[h.start])
	h.ring[h.start] = entry{}
	h.start = (h.start + 1) % len(h.ring)
	h.n--
	switch {
	case h.n == 0:
		h.ring, h.start = nil, 0
	case len(h.ring) > 64 && h.n < len(h.ring)/4:
		// Mostly empty, as the budget leaves a topic: a smaller ring, so
		// that its slots, which the budget does not charge, stay within
		// a few times the entries it does.
		h.resize(2 * h.n)
	}
}

// resize moves the entries, oldest first, into a new ring of size slots.
func (h *history) resize(size int) {
	ring := make([]entry, size)
	for i := range h.n {
		ring[i] = h.ring[(h.start+i)%len(h.ring)]
	}
	h.ring, h.start = ring, 0
}

// floor returns the seq of the oldest entry, or last+1 if there is none;
// last is the topic's seq.
func (h *history) floor(last uint64) uint64 {
	if h.n == 0 {
		return last + 1
	}
	return h.ring[h.start].seq
}

// since returns the frames of the messages after seq, in order, and whether
// history still holds all of them.
func (h *history) since(seq, last uint64) ([][]byte, bool) {
	if seq >= last {
		return nil, seq == last
	}
	if h.n == 0 || h.ring[h.start].seq > seq+1 {
		return nil, false
	}
	frames := make([][]byte, 0, last-seq)
	for i := range h.n {
		e := &h.ring[(h.start+i)%len(h.ring)]
		if e.seq > seq {
			frames = append(frames, e.frame)
		}
	}
	return frames, true
}

// compile builds the frame of a message: the envelope
// {"topic":…,"seq":…,"data":…} in one unmasked text frame. Topic names are
// restricted to characters that need no JSON escaping.
func compile(topic string, seq uint64, data []byte) []byte {
	n := len(`{"topic":"","seq":,"data":}`) + len(topic) + 20 + len(data)
	frame := wsconn.AppendFrameHeader(make([]byte, 0, 10+n), ws.OpText, true, envelopeLen(topic, seq, data))
	frame = append(frame, `{"topic":"`...)
	frame = append(frame, topic...)
	frame = append(frame, `","seq":`...)
	frame = strconv.AppendUint(frame, seq, 10)
	frame = append(frame, `,"data":`...)
	frame = append(frame, data...)
	return append(frame, '}')
}

func envelopeLen(topic string, seq uint64, data []byte) int {
	digits := 1
	for v := seq; v >= 10; v /= 10 {
		digits++
	}
	return len(`{"topic":"","seq":,"data":}`) + len(topic) + digits + len(data)
}

func newEpoch() string {
	return strconv.FormatInt(time.Now().UnixNano(), 36)
}
