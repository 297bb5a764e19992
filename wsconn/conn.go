package wsconn

import (
	"bytes"
	"errors"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/fanout/fanout/poller"
)

// Errors returned by Conn's write methods.
var (
	// ErrClosed is returned for a write to a connection that is closing or closed.
	ErrClosed = errors.New("wsconn: connection closed")
	// ErrQueueFull is returned by Send when the connection's write queue
	// already holds its limit of bytes: the peer is not reading fast enough.
	ErrQueueFull = errors.New("wsconn: write queue full")
	// ErrNotOpening is returned by SendOnOpen outside the Handler's OnOpen.
	ErrNotOpening = errors.New("wsconn: not in OnOpen")
)

// maxIovecs caps the frames passed to one writev.
const maxIovecs = 64

type connState uint8

const (
	stateHandshake connState = iota // reading the HTTP request
	stateHTTP                       // a plain HTTP request's handler runs off the workers; the fd is not armed
	stateOpen                       // WebSocket open
	stateClosing                    // close frame or final HTTP response queued; input is discarded
	stateDraining                   // closing, with nothing more to read (the peer half-closed, or its close frame is answered): write what is owed, then release
	stateClosed                     // fd released
)

// writeState is the write side of a connection. Exactly one holds at a
// time, so that no combination of flags can say two things at once (a
// broken socket still waiting for writability, a shut one still written).
type writeState uint8

const (
	writeReady   writeState = iota // the socket takes writes now
	writeBlocked                   // the last write hit EAGAIN: the fd waits for writability
	writeShut                      // the final bytes are written and the write side is shut down
	writeBroken                    // a write failed: released on the next turn
	// writeOpening: the upgrade response is held back while OnOpen runs,
	// so that the frames OnOpen sends with SendOnOpen go out in its
	// write; nothing is written until then (see Conn.openedLocked).
	writeOpening
)

// Turn scheduling states (Conn.sched).
const (
	turnIdle    = 0 // no turn queued or running; the fd is armed
	turnRunning = 1 // a worker owns the connection
	turnAgain   = 2 // running, and another event arrived: run once more
)

// Conn is one client connection: its socket, its frame reader and its write
// queue. Connections are created by a Server; there is no goroutine per
// connection.
//
// Send, Batch.Send, Close and the accessors are safe for concurrent use.
// Handler callbacks for one connection never run concurrently.
type Conn struct {
	// Fields are ordered to pack: a Conn is 128 bytes, a size class of the
	// allocator, and there is one per connection.
	srv      *Server
	fd       int32  // also the Conn's place in the server's registry
	peerSlot uint32 // the source address's entry in Server.peers, set at accept; 0: not counted

	// sched serializes turns: a connection is served by one worker at a time.
	sched atomic.Uint32

	// mu guards everything below except deflate; rd, which only turns
	// touch; and hs, which only turns touch before the Conn is handed to
	// OnOpen, and then write under mu, since SendOnOpen and UpgradeRequest
	// read it.
	mu    sync.Mutex
	state connState
	out   writeState
	flags connFlags // the booleans, and what the fd was last armed for
	// deflate: the server may send compressed frames (permessage-deflate
	// negotiated, with a window its compressor keeps to). Written before
	// OnOpen, then only read, without mu: a byte of its own, not a flag.
	deflate bool
	// lastSeen is Server.ticks at the last input.
	lastSeen uint32
	// deadline is the tick (see Server.deadlineAfter) by which the
	// handshake must be read, the close finished, or, while open, the
	// frame or fragmented message in progress be complete; 0 means none.
	// Ticks, not a time.Time or unix nanoseconds: 4 bytes, not 24 or 8.
	deadline uint32
	queued   int // bytes in q.frames not yet written
	q        *writeQueue

	rd Reader
	hs *handshake // the request so far, while in stateHandshake

	handler Handler
	// No address is kept: RemoteAddr asks the socket. 18 bytes times a
	// million connections is memory; a getpeername on the rare call is not.
}

// connFlags are a Conn's booleans, under Conn.mu, in one byte.
type connFlags uint8

const (
	// flagArmedRead and flagArmedWrite: what the fd was last armed for
	// (poller.Readable, poller.Writable).
	flagArmedRead connFlags = 1 << iota
	flagArmedWrite
	// flagExpired: the sweep (or a Close before the upgrade) found the
	// connection done; the next turn releases it, whatever out says.
	flagExpired
	flagPinged   // the sweep pinged; cleared by any input
	flagBatching // a turn is reading: writes wait for its end
	// flagPeerClosed: the peer's close frame was read. Once the answer is
	// written the connection is done: nothing but its FIN is to come.
	flagPeerClosed
	// flagRegistered: the fd is in the poller; after a deferred accept,
	// not before the first turn ends (see Server.open).
	flagRegistered
)

// is reports whether f is set. The caller holds c.mu.
func (c *Conn) is(f connFlags) bool { return c.flags&f != 0 }

// set sets f, or clears it. The caller holds c.mu.
func (c *Conn) set(f connFlags, on bool) {
	if on {
		c.flags |= f
	} else {
		c.flags &^= f
	}
}

// armedLocked returns what the fd was last armed for.
func (c *Conn) armedLocked() poller.Event {
	var ev poller.Event
	if c.is(flagArmedRead) {
		ev |= poller.Readable
	}
	if c.is(flagArmedWrite) {
		ev |= poller.Writable
	}
	return ev
}

// setArmedLocked records that the fd is armed for ev.
func (c *Conn) setArmedLocked(ev poller.Event) {
	c.set(flagArmedRead, ev&poller.Readable != 0)
	c.set(flagArmedWrite, ev&poller.Writable != 0)
}

// Handler returns the Handler that serves c (nil before the upgrade).
func (c *Conn) Handler() Handler { return c.handler }

// Compressed reports whether c takes compressed frames (see
// Deflater.CompressFrame): it negotiated permessage-deflate, and did not
// ask for a window smaller than the compressor's. It is fixed before the
// Handler's OnOpen runs; safe for concurrent use from then on.
func (c *Conn) Compressed() bool { return c.deflate }

// handshake holds a request that did not arrive in one read.
type handshake struct {
	// resp, while OnOpen runs (and hs is then the upgrader's, not the
	// connection's own): the upgrade response, held back, which
	// SendOnOpen extends.
	resp *bytes.Buffer
	// upgrade, while OnOpen runs: the request of the upgrade (the
	// upgrader's, reused once OnOpen returns).
	upgrade *Request
	buf     []byte
	need    int           // total request bytes (head and body), once the head is parsed
	req     *http.Request // the plain HTTP request parsed from the head, waiting for its body
	// served counts the plain HTTP requests answered on the connection
	// (keep-alive); with no buf, it is between two requests.
	served int
}

// idleLocked reports whether a connection in stateHandshake is a kept-alive
// one between two requests: its going away is no aborted handshake. Only
// turns call it, since only they touch hs.
func (c *Conn) idleLocked() bool {
	return c.hs != nil && c.hs.served > 0 && len(c.hs.buf) == 0
}

// RemoteAddr returns the peer's address, or the zero AddrPort once the
// connection is released.
func (c *Conn) RemoteAddr() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stateClosed {
		return netip.AddrPort{}
	}
	a := poller.PeerAddr(int(c.fd))
	return netip.AddrPortFrom(a.Addr().Unmap(), a.Port())
}

// feedLocked moves what it can of the backlog into the queue (see
// writeQueue.feed); half the limit is a replay's budget, so that frames sent
// behind it find room.
func (c *Conn) feedLocked() {
	if c.q.behind() {
		c.queued += c.q.feed(c.queued, c.srv.cfg.MaxQueueBytes/2)
	}
}

// admitLocked is the one admission rule of every write: it returns the
// error of Send for a frame of n bytes. ErrClosed unless the connection is
// open and its socket sound; a Reply is then always taken; any other frame
// gets ErrQueueFull if queueing it would pass the queue limit. An empty
// queue always takes a frame, however large.
//
// Before it refuses a frame it tries the socket: frames a Batch queued
// have not been offered to it yet, and a peer that reads as fast as the
// socket goes must not be called slow because a fan-out queued a burst
// faster than any flush.
func (c *Conn) admitLocked(n int, opts SendOption) error {
	switch {
	case c.state != stateOpen || c.out == writeBroken:
		return ErrClosed
	case opts&Reply != 0 || c.roomLocked(n):
		return nil
	case c.out == writeBlocked:
		return ErrQueueFull // the socket is full already
	}
	c.flushLocked()
	switch {
	case c.out == writeBroken:
		return ErrClosed
	case c.roomLocked(n):
		return nil
	}
	return ErrQueueFull
}

// roomLocked reports whether the queue takes a frame of n bytes within its
// limit. An empty queue takes any frame (it has no backlog: see feedLocked).
func (c *Conn) roomLocked(n int) bool {
	return c.queued == 0 || c.q.charge(c.queued)+n+frameOverhead <= c.srv.cfg.MaxQueueBytes
}

// QueuedBytes returns the number of bytes queued and not yet written, those
// waiting behind a replay included; the part of a replay not yet queued is
// not counted.
func (c *Conn) QueuedBytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.q != nil {
		return c.queued + c.q.later
	}
	return c.queued
}

// Evict closes a connection that cannot keep up: it discards the queued
// frames that have not begun to be written, then closes like Close.
func (c *Conn) Evict(code ws.StatusCode, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return
	}
	if c.q != nil {
		c.queued -= c.q.dropUnstarted()
	}
	c.srv.countClose(code)
	c.closeLocked(NewCloseFrame(code, reason))
}

// Close starts the closing handshake: it queues a close frame with code and
// reason, stops reading messages, and releases the connection once the frame
// is written and the peer has closed its side, or after Config.CloseTimeout.
// Close on a connection that is already closing does nothing.
func (c *Conn) Close(code ws.StatusCode, reason string) {
	c.closeBy(code, reason, c.srv.deadlineAfter(c.srv.cfg.CloseTimeout))
}

// closeBy is Close with the deadline for the queue, close frame included,
// to drain: a tick (see Server.deadlineAfter), or 0 for none. Once the close
// frame is written, the peer has at most Config.CloseTimeout to close its
// side. Shutdown gives its whole context to the drain this way.
func (c *Conn) closeBy(code ws.StatusCode, reason string, deadline uint32) {
	c.mu.Lock()
	switch c.state {
	case stateHandshake:
		if c.queued > 0 {
			// A kept-alive connection whose last response is not all
			// written: it gets the rest, then the half-close.
			c.closeLockedBy(nil, deadline)
			c.mu.Unlock()
			return
		}
		// Not a WebSocket yet: there is no one to send a close frame to.
		c.set(flagExpired, true)
		c.mu.Unlock()
		c.schedule()
		return
	case stateHTTP:
		// Its handler's response closes it; Shutdown waits for that.
		c.mu.Unlock()
		return
	case stateOpen:
		c.srv.countClose(code)
	}
	c.closeLockedBy(NewCloseFrame(code, reason), deadline)
	c.mu.Unlock()
}

// closeLocked queues final, the last bytes to send (a close frame or an HTTP
// response), and moves to stateClosing; the connection has
// Config.CloseTimeout to finish.
func (c *Conn) closeLocked(final []byte) {
	c.closeLockedBy(final, c.srv.deadlineAfter(c.srv.cfg.CloseTimeout))
}

// closeLockedBy is closeLocked with the deadline of closeBy.
func (c *Conn) closeLockedBy(final []byte, deadline uint32) {
	if c.state == stateClosing || c.state == stateDraining || c.state == stateClosed {
		return
	}
	if c.state == stateHandshake || c.state == stateHTTP {
		c.srv.handshakes.Add(-1)
	}
	c.state = stateClosing
	c.deadline = deadline
	c.enqueueLocked(final)
	if c.queued == 0 {
		c.shutdownWriteLocked()
	}
}

// shutdownWriteLocked half-closes the socket once the final bytes are
// written. From then on the peer has at most Config.CloseTimeout to close
// its side, however long the drain was allowed to take.
//
// When the final bytes answer the peer's close frame and the kernel has
// sent them all, the connection is released instead (see peerClosed).
func (c *Conn) shutdownWriteLocked() {
	if c.out == writeReady && c.is(flagPeerClosed) && allSent(int(c.fd)) {
		// Our close frame answers the peer's: the closing handshake is
		// over, and a peer that keeps to RFC 6455 (section 5.5.1) sends
		// nothing more, so there is no input to wait out (what one that
		// does not sends meets a reset). A turn releases the connection
		// now, and close sends the FIN: no half-close, no re-arm, no read
		// of the peer's EOF (section 7.1.1: the server closes the TCP
		// connection first). Not while bytes wait for the peer's window:
		// closed, the socket would keep them, orphaned, until the
		// kernel's own timeouts; the half-close and CloseTimeout's reset
		// below free them.
		c.state = stateDraining
		c.schedule()
		return
	}
	if c.out == writeReady {
		c.out = writeShut
		// The half-close tells the peer we are done; we keep reading until
		// its FIN so that unread input does not turn our close into an RST.
		_ = unix.Shutdown(int(c.fd), unix.SHUT_WR)
		if d := c.srv.deadlineAfter(c.srv.cfg.CloseTimeout); c.deadline == 0 || later(c.deadline, d) {
			c.deadline = d
		}
	}
}

// pongLocked answers a ping with payload. A pong is a frame of its own in
// the queue, never inside another. While the socket is full (the peer is not
// reading), a pong queued and not yet begun answers this ping instead,
// rewritten in its own buffer: a peer that pings without reading costs one
// queued pong. A peer that reads gets a pong for every ping.
func (c *Conn) pongLocked(payload []byte) {
	if old := c.q.pendingPong(); old != nil && c.out == writeBlocked {
		c.queued += c.q.replacePong(AppendFrame(old[:0], ws.OpPong, payload))
		return
	}
	// Pings are read in turns, which gather their output: the pong is
	// queued, and written at the turn's end unless a later ping replaces it.
	pong := NewFrame(ws.OpPong, payload)
	c.queueLocked().pushPong(pong)
	c.queued += len(pong)
	c.offerLocked()
}

// enqueueLocked appends frame to the queue and writes what it can now.
func (c *Conn) enqueueLocked(frame []byte) {
	if len(frame) == 0 {
		return
	}
	if n, direct := c.writeNowLocked(frame); direct {
		if n < len(frame) && c.out != writeBroken {
			c.queueStartedLocked(frame, n)
			c.flushLocked()
		}
		return
	}
	c.appendLocked(frame)
	c.offerLocked()
}

// offerLocked writes the queue now, unless the socket is known to be full or
// a turn gathers its output, which then goes out at the turn's end, or as
// soon as the queue is full.
func (c *Conn) offerLocked() {
	if c.out == writeReady && (!c.is(flagBatching) || c.fullLocked()) {
		c.flushLocked()
	}
}

// enqueueCopyLocked is enqueueLocked for bytes the caller keeps: it writes
// what it can at once and copies only what the socket did not take.
func (c *Conn) enqueueCopyLocked(p []byte) {
	if len(p) == 0 {
		return
	}
	if n, direct := c.writeFirstLocked(p); direct {
		if n < len(p) && c.out != writeBroken {
			c.queueStartedLocked(bytes.Clone(p), n)
			c.flushLocked()
		}
		return
	}
	c.enqueueLocked(bytes.Clone(p))
}

// writeNowLocked is the fast path of a write: with nothing queued ahead and
// no turn gathering its output, p is written at once with write(2). direct
// reports whether it was tried; n is how much the socket took. A failed
// write breaks the connection.
func (c *Conn) writeNowLocked(p []byte) (n int, direct bool) {
	if c.is(flagBatching) {
		return 0, false
	}
	return c.writeFirstLocked(p)
}

// writeFirstLocked is writeNowLocked even while a turn gathers its output:
// for bytes the caller keeps, a write now saves their copy.
func (c *Conn) writeFirstLocked(p []byte) (n int, direct bool) {
	if c.queued > 0 || c.out != writeReady {
		return 0, false
	}
	c.srv.writeCalls.Add(1)
	n, err := writeAll(int(c.fd), p)
	if err != nil && err != unix.EAGAIN {
		c.breakLocked()
		return 0, true
	}
	c.srv.bytesOut.Add(uint64(n))
	return n, true
}

// appendLocked appends frame to the queue without writing it, or to the
// backlog behind a replay.
func (c *Conn) appendLocked(frame []byte) {
	if q := c.queueLocked(); q.behind() {
		q.pushBehind(frame, false)
	} else {
		q.push(frame)
		c.queued += len(frame)
	}
}

// queueLocked returns c's write queue, made if it has none (a connection
// whose writes keep up has none, and the sweep frees an idle one).
func (c *Conn) queueLocked() *writeQueue {
	if c.q == nil {
		c.q = newWriteQueue()
	}
	return c.q
}

// queueStartedLocked queues the rest of frame, whose first n bytes are
// written, in an empty queue (see writeQueue.pushStarted).
func (c *Conn) queueStartedLocked(frame []byte, n int) {
	c.queueLocked().pushStarted(frame, n)
	c.queued += len(frame) - n
}

// writeAll writes p with write(2), retrying on EINTR.
func writeAll(fd int, p []byte) (int, error) {
	for {
		n, err := unix.Write(fd, p)
		if err == unix.EINTR {
			continue
		}
		if n < 0 {
			n = 0
		}
		return n, err
	}
}

// flushLocked writes queued frames, up to maxIovecs per writev, until the
// queue is empty or the socket is full. On a full socket it waits for
// writability instead of blocking.
func (c *Conn) flushLocked() {
	if c.out == writeOpening {
		return // the upgrade response goes first: see openedLocked
	}
	var iov [maxIovecs][]byte
	for {
		c.feedLocked()
		if c.queued == 0 {
			break
		}
		vec := c.q.iovecs(iov[:])
		c.srv.writeCalls.Add(1)
		n, err := writev(int(c.fd), vec)
		clear(vec)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			c.waitWritableLocked()
			c.resumeLocked() // what was written may have ended a pause
			return
		}
		if err != nil {
			c.breakLocked()
			return
		}
		c.srv.bytesOut.Add(uint64(n))
		c.advanceLocked(n)
	}
	// The empty queue stays for the next fan-out, so that deliveries
	// allocate nothing; the sweep frees it once the connection goes quiet.

	if c.q != nil && c.q.notify && c.state == stateOpen {
		// The handler asked to know: a turn tells it, off this lock.
		c.q.notify, c.q.emptied = false, true
		c.schedule()
	}

	c.resumeLocked()

	if c.state == stateClosing || c.state == stateDraining {
		c.shutdownWriteLocked()
	}
}

// advanceLocked drops n written bytes from the head of the queue.
func (c *Conn) advanceLocked(n int) {
	c.queued -= n
	c.q.consume(n)
}

// resumeLocked resumes reading when a turn paused it and no turn is left to
// notice that the pause is over (a shard flushed the queue, or queued the
// replay a Hold waited for): without it the peer's messages would never be
// read. Input set aside by the pause gets a turn of its own, since no
// readiness event will come for it.
func (c *Conn) resumeLocked() {
	if c.state != stateOpen || c.sched.Load() != turnIdle || c.pausedLocked() {
		return
	}
	switch {
	case c.q != nil && len(c.q.unread) > 0:
		c.schedule()
	case c.armedLocked()&poller.Readable == 0:
		c.armLocked()
	}
}

// waitWritableLocked arms the fd for writability. When a turn is running
// or pending, the turn arms it as it ends.
func (c *Conn) waitWritableLocked() {
	c.out = writeBlocked
	if c.sched.Load() == turnIdle {
		c.armLocked()
	}
}

// breakLocked marks the connection for release after a failed write.
func (c *Conn) breakLocked() {
	c.out = writeBroken
	c.q, c.queued = nil, 0
	if c.sched.Load() == turnIdle {
		// Have a worker release it: only turns close fds.
		c.schedule()
	}
}

// fullLocked reports whether the write queue is at its limit: the
// connection then stops reading (backpressure) until it drains.
func (c *Conn) fullLocked() bool {
	return c.q.charge(c.queued) >= c.srv.cfg.MaxQueueBytes
}

// pausedLocked reports whether an open connection must handle no more of
// the peer's messages for now: its queue is full, a replay is not yet all
// in the queue, or one is on its way (Hold).
func (c *Conn) pausedLocked() bool {
	return c.fullLocked() || c.q != nil && (c.q.holds > 0 || len(c.q.backlog) > 0)
}

// interestLocked returns the readiness the connection waits for, and no
// more: a paused connection is not armed for reading, nor for the peer's
// half-close, which would fire again at every re-arm and spin a worker.
func (c *Conn) interestLocked() poller.Event {
	var ev poller.Event
	if c.out == writeBlocked {
		ev |= poller.Writable
	}
	if c.readingLocked() {
		ev |= poller.Readable
	}
	return ev
}

// readingLocked reports whether the connection reads its input now: not
// after the peer's EOF, which stays readable, nor while paused, nor while a
// kept-alive connection's last HTTP response is not all written.
func (c *Conn) readingLocked() bool {
	switch c.state {
	case stateOpen:
		return !c.pausedLocked()
	case stateHandshake:
		return c.queued == 0
	case stateHTTP, stateDraining:
		return false
	}
	return true
}

// drainedLocked reports whether a closing connection whose peer has
// half-closed has written all it owed: it can be released.
func (c *Conn) drainedLocked() bool {
	return c.state == stateDraining && c.queued == 0 && c.out != writeBlocked
}

// armLocked arms the fd for what the connection waits for. While an HTTP
// handler runs the fd stays disarmed: nothing is read until the response is
// queued (see serveHTTP).
func (c *Conn) armLocked() {
	if c.state == stateClosed || c.state == stateHTTP {
		return
	}
	armed := c.interestLocked()
	c.setArmedLocked(armed)
	if !c.is(flagRegistered) {
		if err := c.srv.poller.AddHandler(int(c.fd), armed, (*connEvents)(c)); err != nil {
			// No event will come: a turn releases it.
			c.srv.log.Error("wsconn: register connection", "fd", c.fd, "err", err)
			c.set(flagExpired, true)
			c.schedule()
			return
		}
		c.set(flagRegistered, true)
		return
	}
	if err := c.srv.poller.Arm(int(c.fd), armed); err != nil {
		c.srv.log.Debug("wsconn: arm", "fd", c.fd, "err", err)
	}
}

// onEvent is the poller callback: it runs on the poller goroutine and only
// hands the connection to a worker. The poller alone may block on a full
// pool queue: that holds up the reactor, which is its backpressure (see the
// wait-for graph in doc.go).
func (c *Conn) onEvent(poller.Event) {
	if c.claimTurn() {
		c.srv.pool.Submit(c)
	}
}

// connEvents is a Conn as the poller's Handler: a conversion of the
// pointer, where the method value c.onEvent would be a 16-byte allocation
// per connection on epoll (kqueue's poller makes one all the same), and
// Conn has no exported OnEvent for its users to call.
type connEvents Conn

func (e *connEvents) OnEvent(ev poller.Event) { (*Conn)(e).onEvent(ev) }

// schedule queues a turn for c, or, if one is running, asks it to run again.
// It never blocks: shards, the sweep and HTTP handlers call it, some with
// c.mu held.
func (c *Conn) schedule() {
	if c.claimTurn() {
		c.srv.handoff(c)
	}
}

// claimTurn asks for a turn for c. It reports true when the caller must
// queue one; false when a turn is queued or running already (a running turn
// is then asked to run once more).
func (c *Conn) claimTurn() bool {
	for {
		switch c.sched.Load() {
		case turnIdle:
			if c.sched.CompareAndSwap(turnIdle, turnRunning) {
				return true
			}
		case turnRunning:
			if c.sched.CompareAndSwap(turnRunning, turnAgain) {
				return false
			}
		default:
			return false
		}
	}
}

// expire marks c for release by the next turn; the sweep calls it.
func (c *Conn) expire() {
	c.mu.Lock()
	c.set(flagExpired, true)
	c.mu.Unlock()
	c.schedule()
}

// release closes the fd and frees everything the connection holds. Only a
// turn calls it, so no read can be in flight on the fd when it is closed
// (and the fd number reused).
func (c *Conn) release() {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return
	}
	switch c.state {
	case stateHandshake:
		c.srv.handshakes.Add(-1)
		if !c.idleLocked() {
			c.srv.handshakeAborts.Add(1)
		}
	case stateHTTP:
		c.srv.handshakes.Add(-1) // the handler finds the connection gone
	}
	opened := c.handler != nil && c.state != stateHandshake
	c.state = stateClosed
	// Del before close: a closed fd number can be reused at once by accept.
	if c.is(flagRegistered) {
		if err := c.srv.poller.Del(int(c.fd)); err != nil {
			c.srv.log.Debug("wsconn: poller del", "fd", c.fd, "err", err)
		}
	}
	if c.is(flagExpired) && (c.queued > 0 || unsentBytes(int(c.fd)) > 0) {
		// Timed out with output the peer never read: a FIN would wait
		// behind it, and the kernel would keep the orphaned socket and its
		// send buffer (up to megabytes) until its own timeouts. A reset
		// frees them now, and tells the peer it missed data.
		_ = unix.SetsockoptLinger(int(c.fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
		c.srv.resets.Add(1)
	}
	c.q, c.queued = nil, 0
	c.hs = nil // under mu: SendOnOpen and UpgradeRequest read it from any goroutine
	c.mu.Unlock()
	// Forgotten before the close, as the poller is: the registry is keyed
	// by fd number, which accept may reuse at once. Not under mu, which
	// QueuedBytes takes under a registry shard's lock. Nobody touches the
	// fd meanwhile: all but this turn check the state under mu first.
	c.srv.forget(c)
	_ = unix.Close(int(c.fd))
	c.rd = Reader{}
	if opened {
		c.srv.websockets.Add(-1)
	}
	if opened {
		c.handler.OnClose(c)
	}
}
