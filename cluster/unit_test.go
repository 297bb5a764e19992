package cluster

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestReconnectDelay: the wait doubles from 250 ms to 8 s, with up to half
// as much again of jitter.
func TestReconnectDelay(t *testing.T) {
	for n, base := range map[int]time.Duration{1: 250 * time.Millisecond, 2: 500 * time.Millisecond, 3: time.Second, 6: 8 * time.Second, 50: 8 * time.Second} {
		for range 100 {
			d := reconnectDelay(n)
			assert.GreaterOrEqual(t, d, base, "attempt %d", n)
			assert.LessOrEqual(t, d, base+base/2, "attempt %d", n)
		}
	}
}

// TestMarkWatches: a disconnect marks each watch's last message for the
// reconnect's check. A watch still marked (its check not done: NATS was
// lost again first) keeps its first mark, since what it received since may
// come from a stream made anew; a watch checked meanwhile is marked again
// with what it has now, so that the next reconnect checks it too.
func TestMarkWatches(t *testing.T) {
	b := &Broker{watches: map[*watch]struct{}{}}
	checked, pending := &watch{subj: "a"}, &watch{subj: "b"}
	fresh := &watch{subj: "c"} // nothing received yet: nothing to mark
	checked.last = head{stream: 3, seq: 1, epoch: "e"}
	pending.last = head{stream: 4, seq: 1, epoch: "f"}
	for _, w := range []*watch{checked, pending, fresh} {
		b.watches[w] = struct{}{}
	}
	b.markWatches()
	require.ElementsMatch(t, []streamMark{{checked, checked.last}, {pending, pending.last}}, b.marks)

	// The reconnect's check got through checked only, as recheck leaves
	// it; both received more, and NATS is lost again.
	first := streamMark{pending, pending.last}
	b.marks = []streamMark{first}
	checked.unchecked = false
	checked.last = head{stream: 9, seq: 2, epoch: "e"}
	pending.last = head{stream: 8, seq: 2, epoch: "f"}
	b.markWatches()
	assert.ElementsMatch(t, []streamMark{first, {checked, checked.last}}, b.marks)
}
