package wsconn

// writeQueue holds, in order, the frames the socket did not take at once. A
// connection whose writes keep up never allocates one. The frames are
// references: to frame bytes shared by every subscriber of a broadcast, or
// to bytes the connection owns (a reply, the rest of a frame written in
// part); either way the queue only keeps them until they are written.
//
// Writing takes frames from the head and appending adds them at the tail,
// each in amortized constant time whatever the queue's length: the written
// head is skipped by an index, and the slice is compacted only when at
// least half of it is written. (Copying the rest down after every writev
// made draining a long queue quadratic.)
//
// A writeQueue is not safe for concurrent use: Conn.mu guards it.
type writeQueue struct {
	frames [][]byte // frames[head:] are queued; those before head are written and cleared
	head   int
	off    int  // bytes of frames[head] already written
	pong   int  // 1 + the index of a queued pong not yet begun, which a later ping replaces; 0: none
	quiet  bool // empty at the last sweep: freed if still empty at the next
}

// frameOverhead is what a queued frame costs beyond its bytes, charged
// against the queue limit: its slice header in frames (24 bytes) and the
// slack of the slice's growth. Without it a flood of tiny frames (pongs,
// echoes of empty messages) would hold many times the limit in memory.
const frameOverhead = 48

// newWriteQueue returns an empty queue with room for a few frames.
func newWriteQueue() *writeQueue {
	return &writeQueue{frames: make([][]byte, 0, 8)}
}

// empty reports whether every queued byte is written.
func (q *writeQueue) empty() bool { return q.head == len(q.frames) }

// len returns the number of frames queued, the one written in part
// included.
func (q *writeQueue) len() int { return len(q.frames) - q.head }

// push appends frame, which must not be empty, at the tail.
func (q *writeQueue) push(frame []byte) {
	if len(q.frames) == cap(q.frames) && q.head > 0 && q.head >= len(q.frames)/2 {
		// At least half is written: move the rest down instead of growing.
		n := copy(q.frames, q.frames[q.head:])
		clear(q.frames[n:])
		if q.pong > 0 {
			q.pong -= q.head
		}
		q.frames, q.head = q.frames[:n], 0
	}
	q.frames = append(q.frames, frame)
	q.quiet = false
}

// pushStarted puts frame, of which the first n bytes are already written,
// in the empty queue. The frame goes in whole, with off = n, so that
// dropUnstarted sees it has begun and keeps it: a frame cut short would
// break the stream.
func (q *writeQueue) pushStarted(frame []byte, n int) {
	q.frames, q.head, q.pong = q.frames[:0], 0, 0
	q.push(frame)
	q.off = n
}

// iovecs fills iov with the unwritten bytes of the first len(iov) frames,
// for one writev, and returns the filled part. The caller clears iov after
// the write, so that it keeps no reference to frame bytes.
func (q *writeQueue) iovecs(iov [][]byte) [][]byte {
	k := copy(iov, q.frames[q.head:])
	if k > 0 {
		iov[0] = iov[0][q.off:]
	}
	return iov[:k]
}

// consume drops n written bytes from the head.
func (q *writeQueue) consume(n int) {
	for n > 0 && q.head < len(q.frames) {
		rest := len(q.frames[q.head]) - q.off
		if n < rest {
			q.off += n
			return
		}
		n -= rest
		q.frames[q.head] = nil // release the reference to the frame's bytes
		q.head++
		q.off = 0
	}
	if q.pong > 0 && (q.pong-1 < q.head || q.pong-1 == q.head && q.off > 0) {
		q.pong = 0 // written, or begun: a later ping gets a pong of its own
	}
	if q.head == len(q.frames) {
		q.frames, q.head = q.frames[:0], 0
	}
}

// charge returns what the queued frames count against the queue limit:
// bytes is their unwritten bytes, and each frame adds frameOverhead.
func (q *writeQueue) charge(bytes int) int {
	if q == nil {
		return bytes
	}
	return bytes + q.len()*frameOverhead
}

// pendingPong returns the queued pong not yet begun, or nil.
func (q *writeQueue) pendingPong() []byte {
	if q == nil || q.pong == 0 {
		return nil
	}
	return q.frames[q.pong-1]
}

// replacePong puts frame in the place of the pending pong (see
// pendingPong) and returns the change in queued bytes. RFC 6455 section
// 5.5.3 lets a pong answer only the most recent of several pings, so a ping
// flood costs one queued frame, not one per ping.
func (q *writeQueue) replacePong(frame []byte) (added int) {
	i := q.pong - 1
	added = len(frame) - len(q.frames[i])
	q.frames[i] = frame
	return added
}

// pushPong is push for a pong, which a later ping may replace.
func (q *writeQueue) pushPong(frame []byte) {
	q.push(frame)
	q.pong = len(q.frames)
}

// dropUnstarted drops the queued frames not yet begun, keeping a frame
// written in part, and returns the number of bytes dropped.
func (q *writeQueue) dropUnstarted() (dropped int) {
	keep := q.head
	if q.off > 0 {
		keep++ // a frame half written must be finished, or the stream breaks
	}
	for i := keep; i < len(q.frames); i++ {
		dropped += len(q.frames[i])
		q.frames[i] = nil
	}
	q.frames = q.frames[:keep]
	if q.pong > keep {
		q.pong = 0
	}
	if q.head == len(q.frames) {
		q.frames, q.head = q.frames[:0], 0
	}
	return dropped
}
