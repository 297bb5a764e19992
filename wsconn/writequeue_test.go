package wsconn

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// queued returns the unwritten bytes of q, in order, as one writev would
// see them if it took every frame.
func (q *writeQueue) queued() []byte {
	iov := make([][]byte, q.len())
	return bytes.Join(q.iovecs(iov), nil)
}

func TestWriteQueue(t *testing.T) {
	type step struct {
		push    string // a frame to push
		consume int    // bytes to consume
		drop    int    // dropUnstarted, wanting this many bytes dropped (-1: skip)
		want    string // all unwritten bytes after the step
	}
	for _, tc := range []struct {
		name  string
		steps []step
	}{
		{"push and drain whole frames", []step{
			{push: "ab", drop: -1, want: "ab"},
			{push: "cde", drop: -1, want: "abcde"},
			{consume: 2, drop: -1, want: "cde"},
			{consume: 3, drop: -1, want: ""},
		}},
		{"consume across frames and within one", []step{
			{push: "abc", drop: -1, want: "abc"},
			{push: "de", drop: -1, want: "abcde"},
			{push: "fgh", drop: -1, want: "abcdefgh"},
			{consume: 1, drop: -1, want: "bcdefgh"},
			{consume: 3, drop: -1, want: "efgh"},
			{consume: 2, drop: -1, want: "gh"},
			{push: "i", drop: -1, want: "ghi"},
			{consume: 3, drop: -1, want: ""},
		}},
		{"drop keeps the frame begun", []step{
			{push: "abc", drop: -1, want: "abc"},
			{push: "de", drop: -1, want: "abcde"},
			{push: "f", drop: -1, want: "abcdef"},
			{consume: 1, drop: 3, want: "bc"},
			{consume: 2, drop: -1, want: ""},
		}},
		{"drop with no frame begun drops all", []step{
			{push: "abc", drop: -1, want: "abc"},
			{push: "de", drop: -1, want: "abcde"},
			{consume: 3, drop: 2, want: ""},
			{push: "x", drop: -1, want: "x"},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := newWriteQueue()
			for i, s := range tc.steps {
				if s.push != "" {
					q.push([]byte(s.push))
				}
				if s.consume > 0 {
					q.consume(s.consume)
				}
				if s.drop >= 0 {
					assert.Equal(t, s.drop, q.dropUnstarted(), "step %d: bytes dropped", i)
				}
				assert.Equal(t, s.want, string(q.queued()), "step %d", i)
				assert.Equal(t, s.want == "", q.empty(), "step %d: empty", i)
			}
		})
	}
}

func TestWriteQueuePushStarted(t *testing.T) {
	q := newWriteQueue()
	q.push([]byte("old"))
	q.consume(3)
	q.pushStarted([]byte("hello"), 2)
	assert.Equal(t, "llo", string(q.queued()))
	assert.Equal(t, 0, q.dropUnstarted(), "the frame begun stays")
	q.push([]byte("!"))
	assert.Equal(t, 1, q.dropUnstarted())
	q.consume(3)
	assert.True(t, q.empty())
}

// TestWriteQueueIovecs: a writev takes at most len(iov) frames, the first
// from its offset.
func TestWriteQueueIovecs(t *testing.T) {
	q := newWriteQueue()
	for i := range 10 {
		q.push([]byte{byte('a' + i), byte('a' + i)})
	}
	q.consume(1)
	var iov [4][]byte
	vec := q.iovecs(iov[:])
	require.Len(t, vec, 4)
	assert.Equal(t, "a", string(vec[0]))
	assert.Equal(t, "dd", string(vec[3]))
	q.consume(5) // "a", "bb", "cc"
	assert.Equal(t, "dd", string(q.iovecs(iov[:])[0]))
	assert.Empty(t, newWriteQueue().iovecs(iov[:]))
}

// TestWriteQueueReleasesFrames: written and dropped frames are not kept
// reachable from the queue's slice, so shared frame bytes can be freed.
func TestWriteQueueReleasesFrames(t *testing.T) {
	q := newWriteQueue()
	for range 20 {
		q.push([]byte("frame"))
	}
	q.consume(5 * 12)
	for i := range q.head {
		assert.Nil(t, q.frames[:cap(q.frames)][i], "written frame %d still referenced", i)
	}
	q.dropUnstarted()
	for i, f := range q.frames[:cap(q.frames)] {
		assert.Nil(t, f, "frame %d still referenced after the drop", i)
	}
}

// TestWriteQueueCompacts: a queue that always holds a backlog of a few
// frames, one written as one is added, never empties; its slice is still
// reused rather than grown, and order is kept.
func TestWriteQueueCompacts(t *testing.T) {
	q := newWriteQueue()
	next, want := 0, 0
	push := func() {
		q.push([]byte{byte(next)})
		next++
	}
	for range 5 {
		push()
	}
	for range 10000 {
		push()
		require.Equal(t, byte(want), q.frames[q.head][q.off])
		q.consume(1)
		want++
		require.Equal(t, 5, q.len())
	}
	assert.LessOrEqual(t, cap(q.frames), 16, "the slice grew with the frames written, not the backlog")
}

// BenchmarkWriteQueueDrain queues n frames and drains them as flushLocked
// does, maxIovecs frames per writev: the time per frame stays flat as n
// grows (it grew with n when the rest was copied down after every writev).
func BenchmarkWriteQueueDrain(b *testing.B) {
	frame := make([]byte, 64)
	for _, n := range []int{1000, 65536, 500000} {
		b.Run(fmt.Sprintf("frames=%d", n), func(b *testing.B) {
			q := newWriteQueue()
			var iov [maxIovecs][]byte
			for b.Loop() {
				for range n {
					q.push(frame)
				}
				for !q.empty() {
					vec := q.iovecs(iov[:])
					w := 0
					for _, v := range vec {
						w += len(v)
					}
					clear(vec)
					q.consume(w)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*n), "ns/frame")
		})
	}
}

// TestWriteQueueBacklog: a replay moves into the queue within its budget,
// an empty queue takes one frame however large, frames sent behind the
// replay are counted at once and keep their order, and dropping clears it
// all.
func TestWriteQueueBacklog(t *testing.T) {
	q := newWriteQueue()
	q.push([]byte("L0"))
	for _, f := range []string{"r1", "r2", "r3", "r4"} {
		q.pushBehind([]byte(f), true)
	}
	q.pushBehind([]byte("L5"), false)
	q.pushBehind([]byte("r6"), true)
	assert.True(t, q.behind())
	assert.Equal(t, 2+2+2*frameOverhead, q.charge(2), "frames behind a replay are counted; the replay's are not")

	// A budget of 3 frames: the queued frame and two replay frames (the
	// one behind the replay does not count).
	budget := 3 * (2 + frameOverhead)
	moved := q.feed(2, budget)
	assert.Equal(t, 4, moved)
	assert.Equal(t, "L0r1r2", string(q.queued()))

	// The queue drains: the rest moves, L5 with it (it was counted) but
	// not r6, past the budget.
	q.consume(6)
	moved = q.feed(0, budget)
	assert.Equal(t, "r3r4L5", string(q.queued()))
	assert.Equal(t, 6, moved)
	assert.Zero(t, q.later, "L5 is in the queue now")
	q.consume(6)
	assert.Equal(t, 2, q.feed(0, budget))
	assert.False(t, q.behind())
	assert.Nil(t, q.backlog, "the backlog's array is released")

	// An empty queue takes a replay frame over the budget, and only one.
	q.consume(2)
	big := bytes.Repeat([]byte("x"), 2*budget)
	q.pushBehind(big, true)
	q.pushBehind([]byte("r7"), true)
	moved = q.feed(0, budget)
	assert.Equal(t, len(big), moved)
	assert.True(t, q.behind(), "r7 waits")
	q.consume(len(big))
	assert.Equal(t, 2, q.feed(0, budget))

	// Dropping clears the backlog and what it counted.
	q.consume(2 * budget)
	q.push([]byte("a"))
	q.pushBehind([]byte("r"), true)
	q.pushBehind([]byte("L"), false)
	q.dropUnstarted()
	assert.False(t, q.behind())
	assert.Zero(t, q.charge(0))
	assert.True(t, q.idle())

	q.holds = 1
	assert.False(t, q.idle(), "a held queue is not idle")
	q.holds, q.unread = 0, []byte("x")
	assert.False(t, q.idle(), "a queue with input set aside is not idle")
}
