package wsconn

import (
	"bytes"
	"slices"
)

// A SendOption says how Send treats a frame. Options combine with |; the
// zero value sends a shared frame that a full queue refuses.
type SendOption uint8

const (
	// Copy says the caller reuses the frame once Send returns: what the
	// socket does not take at once is copied into the queue. Without
	// Copy the frame is kept, shared and not copied: the caller must not
	// modify it afterwards, and may pass it to any number of connections.
	Copy SendOption = 1 << iota
	// Reply says the frame answers the peer (a pong, an echo, the reply
	// to a request): a full queue does not refuse it. It is queued past
	// MaxQueueBytes, counted against the limit, and the connection then
	// handles no more of the peer's messages until the queue drains below
	// it, so a peer that asks faster than it reads is slowed down by TCP
	// flow control instead of piling up answers.
	Reply
)

// Send queues frame, a complete server frame (see AppendFrame and
// NewFrame), to be written to the peer, and writes what the socket takes
// now; opts say whether the frame is copied and whether a full queue may
// refuse it.
//
// Send never blocks. It returns ErrClosed, and queues nothing, unless the
// connection is open; ErrQueueFull, and queues nothing, when the frame
// would take the queue past MaxQueueBytes even after writing what the
// socket takes now (never for a Reply). An empty queue takes any frame.
func (c *Conn) Send(frame []byte, opts SendOption) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, err := c.sendLocked(frame, opts, false)
	return err
}

// sendLocked is Send, or, deferred, Batch.Send: the frame is queued and
// not written, and first reports whether the caller must flush c once it
// has queued what it has (the queue was empty, and no turn of c gathers
// its output, which it writes at its end with what the caller queued).
func (c *Conn) sendLocked(frame []byte, opts SendOption, deferred bool) (first bool, err error) {
	if err := c.admitLocked(len(frame), opts); err != nil {
		return false, err
	}
	if len(frame) == 0 {
		return false, nil
	}
	switch {
	case deferred:
		if opts&Copy != 0 {
			frame = bytes.Clone(frame)
		}
		first = c.queued == 0 && !c.is(flagBatching)
		c.appendLocked(frame)
	case opts&Copy != 0:
		c.enqueueCopyLocked(frame)
	default:
		c.enqueueLocked(frame)
	}
	return first, nil
}

// SendOnOpen sends frame from the Handler's OnOpen, with the upgrade
// response: the response is held back while OnOpen runs, and the frames
// OnOpen sends this way are written in the same write, right behind it and
// ahead of every frame sent otherwise (with Send or a Batch, from OnOpen or
// from elsewhere), in the order OnOpen sent them. A handler that answers
// what the request asked for (the subscriptions of its URL) saves a write
// per connection this way; a write on loopback carries the peer's TCP work
// too, and writes were 43% of the server's CPU in a profile of 15,000
// connections opened and closed.
//
// frame is copied; the queue limit does not apply, as for a Reply.
// SendOnOpen returns ErrClosed once the connection is closing, and
// ErrNotOpening once the response is written (OnOpen has returned).
// It is meant for OnOpen's own goroutine: a frame another goroutine sends
// this way while OnOpen runs goes ahead of what that goroutine queued
// before.
func (c *Conn) SendOnOpen(frame []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case c.state != stateOpen:
		return ErrClosed
	case c.hs == nil || c.hs.resp == nil:
		return ErrNotOpening
	}
	c.hs.resp.Write(frame)
	return nil
}

// UpgradeRequest returns, while the Handler's OnOpen runs, the request
// the connection was upgraded with, as Config.Upgrade saw it; otherwise,
// and once the connection is closing, nil. A handler can so act on the
// request in OnOpen (subscribe what its URL names) without keeping
// anything of it on the connection. It is meant for OnOpen's goroutine:
// the Request is reused once OnOpen returns, though its strings may be
// kept.
func (c *Conn) UpgradeRequest() *Request {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen || c.hs == nil {
		return nil
	}
	return c.hs.upgrade
}

// openedLocked ends OnOpen's hold on the writes: it writes resp, the
// upgrade response and what SendOnOpen added to it, ahead of whatever was
// queued meanwhile. resp belongs to the pooled upgrader: what the socket
// does not take is copied.
func (c *Conn) openedLocked(resp []byte) {
	c.hs = nil
	if c.out != writeOpening {
		// Not reached: only a write changes out, and none is made
		// while OnOpen runs.
		return
	}
	c.out = writeReady
	if c.queued == 0 {
		c.enqueueCopyLocked(resp)
		return
	}
	// Frames were queued while OnOpen ran (a Close, a Batch): none is
	// written yet, since flushLocked waits for the response. The turn's
	// end writes them all.
	c.queueLocked().pushFront(bytes.Clone(resp))
	c.queued += len(resp)
}

// Batch gathers frames for many connections and writes each one's share at
// Flush, with as few writevs as it takes: a fan-out that queues a burst to
// thousands of connections writes to each once per burst, not once per
// frame. The zero Batch is ready to use. A Batch is not safe for
// concurrent use; it keeps the connections it must flush until Flush.
type Batch struct {
	conns []*Conn // connections with frames queued and not yet flushed
}

// Send queues frame to c as Conn.Send does, with the same options and
// errors, but leaves the writing to Flush (or to a turn of c that gathers
// its output, which writes it at its end).
func (b *Batch) Send(c *Conn, frame []byte, opts SendOption) error {
	c.mu.Lock()
	first, err := c.sendLocked(frame, opts, true)
	c.mu.Unlock()
	if first {
		b.conns = append(b.conns, c)
	}
	return err
}

// Flush writes what the batch queued, as far as each socket takes it
// without blocking; the rest is written when the socket becomes writable.
func (b *Batch) Flush() {
	for i, c := range b.conns {
		c.flush()
		b.conns[i] = nil
	}
	b.conns = b.conns[:0]
}

// flush writes what a Batch queued to c.
func (c *Conn) flush() {
	c.mu.Lock()
	if c.queued > 0 && c.out == writeReady && c.state != stateClosed {
		c.flushLocked()
	}
	c.mu.Unlock()
}

// Hold stops c from handling more of the peer's messages until a matching
// SendReplay: a handler that hands a replay to another goroutine to send
// calls it first, so that a peer cannot ask for more replays before the
// first is queued. Every Hold must be matched by one SendReplay.
func (c *Conn) Hold() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed {
		return
	}
	c.queueLocked().holds++
}

// SendReplay queues frames, a burst the peer asked for (a history replay),
// in order, and releases one Hold. The frames are shared, not copied: the
// caller must not modify them, nor the slice, afterwards.
//
// A replay is never refused, and it is charged against the queue limit: it
// moves into the queue a chunk at a time as the socket drains, within half
// the limit, and the frames sent after it wait behind it. Until its last
// frame is in the queue the connection handles no more of the peer's
// messages, so that a peer holds at most one request's replays at a time.
// It returns ErrClosed, and queues nothing, if the connection is closing.
func (c *Conn) SendReplay(frames [][]byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.q != nil && c.q.holds > 0 {
		c.q.holds--
	}
	if c.state != stateOpen || c.out == writeBroken {
		return ErrClosed
	}
	q := c.queueLocked()
	q.backlog = slices.Grow(q.backlog, len(frames))
	for _, f := range frames {
		if len(f) > 0 {
			q.pushBehind(f, true)
		}
	}
	c.feedLocked()
	c.offerLocked()
	c.resumeLocked()
	return nil
}

// NotifyDrain asks for a call to the Handler's OnDrain (see Drainer) once
// everything queued so far has been written: a fan-out that had to skip
// frames for c, because its queue was full, learns when c can take a
// notice of what it missed. Nothing happens if c closes first, or if its
// Handler is not a Drainer.
func (c *Conn) NotifyDrain() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return
	}
	c.queueLocked()
	if c.queued > 0 || c.out == writeBlocked {
		c.q.notify = true
		return
	}
	c.q.emptied = true
	c.schedule()
}
