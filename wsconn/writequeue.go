package wsconn

import "slices"

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
	quiet  bool // idle at the last sweep: freed if still idle at the next

	// A replay goes into frames a chunk at a time as the socket drains
	// (see Conn.SendReplay). Until its last frame is in, the rest waits in
	// backlog, and so does every frame sent after it, in order.
	backlog []pending
	later   int // bytes of the frames in backlog that are not a replay's: counted against the limit already
	nlater  int // and how many they are
	holds   int // Conn.Hold calls not yet matched by Conn.SendReplay

	notify  bool // Conn.NotifyDrain was called: tell the handler once the queue is empty
	emptied bool // the queue emptied after NotifyDrain: the next turn calls Drainer.OnDrain

	// unread is input read but not handled because the connection paused
	// (its queue full, or a replay on its way) in the middle of it. It is
	// handled before anything more is read.
	unread []byte
}

// pending is a frame in the backlog.
type pending struct {
	frame  []byte
	replay bool // a replay's frame, not counted against the limit until it moves into frames
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

// pushFront puts frame, which must not be empty, ahead of every queued
// frame; none of them may have begun to be written (off is 0). It serves
// the handshake response, held back while OnOpen runs (see
// Conn.SendOnOpen), when something was queued meanwhile.
func (q *writeQueue) pushFront(frame []byte) {
	if q.head > 0 {
		q.head--
		q.frames[q.head] = frame
	} else {
		q.frames = slices.Insert(q.frames, 0, frame)
		if q.pong > 0 {
			q.pong++ // an index into frames, which moved up
		}
	}
	q.quiet = false
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
// bytes is their unwritten bytes, to which the frames waiting behind a
// replay add theirs, and each frame adds frameOverhead. A replay's frames
// count once they are in frames.
func (q *writeQueue) charge(bytes int) int {
	if q == nil {
		return bytes
	}
	return bytes + q.later + (q.len()+q.nlater)*frameOverhead
}

// idle reports whether the queue holds nothing the connection needs: no
// frame, no hold and no input set aside. The sweep frees an idle queue.
func (q *writeQueue) idle() bool {
	return q.empty() && len(q.backlog) == 0 && q.holds == 0 && len(q.unread) == 0 && !q.notify && !q.emptied
}

// behind reports whether a frame sent now must wait in the backlog, behind
// a replay not yet all in frames.
func (q *writeQueue) behind() bool { return q != nil && len(q.backlog) > 0 }

// pushBehind appends frame to the backlog: a replay's frame, or a frame
// sent after one, counted against the limit from now.
func (q *writeQueue) pushBehind(frame []byte, replay bool) {
	q.backlog = append(q.backlog, pending{frame: frame, replay: replay})
	if !replay {
		q.later += len(frame)
		q.nlater++
	}
	q.quiet = false
}

// feed moves frames from the backlog into frames, in order, and returns the
// bytes it moved. A frame counted already moves at once; a replay's frame
// moves while the frames in the queue, with their overhead, stay within
// budget, and an empty queue (queued, its unwritten bytes, is 0) takes one
// however large, so that a replay always makes progress. The frames waiting
// behind do not count here: were they to fill the budget, the replay would
// move a frame per write.
func (q *writeQueue) feed(queued, budget int) (moved int) {
	for len(q.backlog) > 0 {
		p := q.backlog[0]
		if p.replay {
			inQueue := queued + moved + q.len()*frameOverhead
			if queued+moved > 0 && inQueue+len(p.frame)+frameOverhead > budget {
				break
			}
		} else {
			q.later -= len(p.frame)
			q.nlater--
		}
		q.backlog[0] = pending{} // release the reference
		q.backlog = q.backlog[1:]
		q.push(p.frame)
		moved += len(p.frame)
	}
	if len(q.backlog) == 0 {
		q.backlog = nil // a long replay's array goes with it
	}
	return moved
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

// dropUnstarted drops the queued frames not yet begun and the backlog,
// keeping a frame written in part, and returns the number of bytes dropped
// from frames.
func (q *writeQueue) dropUnstarted() (dropped int) {
	clear(q.backlog)
	q.backlog, q.later, q.nlater = nil, 0, 0
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
