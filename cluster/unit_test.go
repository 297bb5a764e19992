package cluster

import (
	"slices"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
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

// TestStaleCheckTakesNothing: a reconnect's check that NATS was lost again
// during (another outage counted since it began) takes none of what it
// read, which may predate that outage: the marks stay for the next
// reconnect's check, and their watches stay marked. A current check takes
// its results.
func TestStaleCheckTakesNothing(t *testing.T) {
	b := &Broker{watches: map[*watch]struct{}{}}
	w := &watch{subj: "a", last: head{stream: 3, seq: 1, epoch: "e"}}
	b.watches[w] = struct{}{}
	b.markWatches()
	gen := b.outage()
	marks := slices.Clone(b.marks)
	b.markWatches() // lost again while the check read

	lost, unchecked, err := b.applyCheck(gen, marks, []bool{true}, []error{nil})
	require.ErrorIs(t, err, errStale)
	assert.Empty(t, lost)
	assert.Zero(t, unchecked)
	assert.Equal(t, marks, b.marks, "kept for the next check")
	assert.True(t, w.unchecked)

	lost, unchecked, err = b.applyCheck(b.outage(), marks, []bool{true}, []error{nil})
	require.NoError(t, err)
	assert.Equal(t, []*watch{w}, lost)
	assert.Zero(t, unchecked)
	assert.Empty(t, b.marks)
	assert.False(t, w.unchecked)
}

// TestRegisterOvertakenWatch: a watch that NATS was lost during the start
// of is refused, not entered among the running watches: the disconnect's
// marks did not cover it, so the reconnect's check would not either. One
// that started within an outage's count is entered, and the next
// disconnect marks it.
func TestRegisterOvertakenWatch(t *testing.T) {
	b := &Broker{watches: map[*watch]struct{}{}}
	gen := b.outage()
	b.markWatches() // NATS lost while the watch read its backlog
	late := &watch{subj: "a", last: head{stream: 3, seq: 1, epoch: "e"}}
	require.ErrorIs(t, b.register(late, gen), nats.ErrDisconnected)
	assert.NotContains(t, b.watches, late)

	w := &watch{subj: "b", last: head{stream: 4, seq: 1, epoch: "f"}}
	require.NoError(t, b.register(w, b.outage()))
	b.markWatches()
	assert.Equal(t, []streamMark{{w, w.last}}, b.marks)
}
