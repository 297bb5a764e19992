package wsconn

import (
	"bytes"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"
)

// maxReadsPerTurn bounds the work of one turn, so that one busy client cannot
// starve the others: after that many full reads the connection goes to the
// back of the queue (the fd is level-triggered, so it fires again at once).
const maxReadsPerTurn = 4

// serve runs turns for c until no more are requested. worker's read buffer
// is buf.
func (c *Conn) serve(buf []byte) {
	for {
		c.srv.turns.Add(1)
		c.turn(buf)
		c.mu.Lock()
		again := (c.is(flagExpired) || c.out == writeBroken) && c.state != stateClosed
		c.mu.Unlock()
		if again {
			continue // a write failed or a deadline passed during the turn
		}
		if c.sched.CompareAndSwap(turnRunning, turnIdle) {
			c.mu.Lock()
			c.armLocked()
			// A pause that lifted during the turn (a SendReplay or a
			// flush that found it running) leaves set-aside input with
			// no readiness event to come for it: a turn of its own,
			// through the pool, so that other connections get theirs.
			c.resumeLocked()
			c.mu.Unlock()
			return
		}
		// turnAgain: an event arrived during the turn.
		c.sched.Store(turnRunning)
	}
}

// turn flushes what waits for writability, then reads and handles what has
// arrived (see read), then writes what that produced.
func (c *Conn) turn(buf []byte) {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return
	}
	if c.out == writeBlocked {
		c.out = writeReady
		c.flushLocked()
	}
	if c.is(flagExpired) && c.answerExpiredLocked() {
		c.flushLocked()
	}
	if c.is(flagExpired) || c.out == writeBroken || c.drainedLocked() {
		c.mu.Unlock()
		c.release()
		return
	}
	emptied := c.q != nil && c.q.emptied && c.state == stateOpen
	if emptied {
		c.q.emptied = false
	}
	// What the turn writes (pongs, echoes, replies, a close frame) is
	// gathered and written at its end, a writev for up to maxIovecs frames,
	// not a write for each.
	c.set(flagBatching, true)
	c.mu.Unlock()
	if emptied {
		if d, ok := c.handler.(Drainer); ok {
			d.OnDrain(c)
		}
	}
	c.read(buf)
	c.mu.Lock()
	c.set(flagBatching, false)
	if c.queued > 0 && c.out == writeReady && c.state != stateClosed {
		c.flushLocked()
	}
	done := c.drainedLocked()
	c.mu.Unlock()
	if done {
		c.release()
	}
}

// read reads and handles what has arrived, within maxReadsPerTurn reads.
func (c *Conn) read(buf []byte) {
	for range maxReadsPerTurn {
		c.mu.Lock()
		state := c.state
		paused := state == stateOpen && c.pausedLocked()
		if paused && c.out == writeReady && c.fullLocked() {
			c.flushLocked() // the turn's gathered output first
			paused = c.pausedLocked()
		}
		// Nor while an HTTP handler runs or its response is not all
		// written, nor after the peer's EOF (see readingLocked).
		paused = paused || !c.readingLocked()
		var unread []byte
		if !paused && state == stateOpen && c.q != nil {
			unread, c.q.unread = c.q.unread, nil
		}
		// Paused with nothing to write, the fd is armed for nothing; an
		// error (a reset) still fires, and is noticed only here, since
		// nothing is read or written: released, or it would fire again at
		// every re-arm.
		failed := paused && state == stateOpen && c.out != writeBlocked && socketFailed(int(c.fd))
		c.mu.Unlock()
		if failed {
			c.release()
			return
		}
		if paused {
			return
		}
		if len(unread) > 0 {
			// Input set aside by a pause comes before anything newer.
			c.readFrames(unread, true)
			continue
		}
		off := 0
		if state == stateOpen {
			off = c.rd.TakePending(buf)
		}
		n, err := unix.Read(int(c.fd), buf[off:])
		if err == unix.EINTR || err == unix.EAGAIN {
			c.rd.putPending(buf[:off]) // nothing new: keep the partial header
			if err == unix.EINTR {
				continue
			}
			return
		}
		if err != nil || n == 0 {
			c.mu.Lock()
			owed := err == nil && c.state == stateClosing && (c.queued > 0 || c.out == writeBlocked)
			if owed {
				// The peer half-closed, and our final bytes (a large
				// response, a close frame behind a backlog) are still
				// owed to it: stop reading, finish writing, then go.
				c.state = stateDraining
			}
			c.mu.Unlock()
			if !owed {
				// EOF or reset: after our close frame, this is the
				// peer's close; otherwise the peer went away without one.
				c.release()
			}
			return
		}
		c.srv.bytesIn.Add(uint64(n))
		switch state {
		case stateHandshake:
			c.readHandshake(buf[off : off+n])
		case stateOpen:
			c.readFrames(buf[:off+n], false)
		case stateClosing:
			// Discard: we are waiting for the peer's FIN.
		}
		if off+n < len(buf) {
			return // the socket is very likely drained
		}
	}
}

// socketFailed reports whether the socket has a pending error, such as a
// reset by the peer.
func socketFailed(fd int) bool {
	e, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	return err == nil && e != 0
}

// readFrames handles the frames in p, input just read, and restarts the
// idle clock and the frame deadline. When the connection pauses (see
// pausedLocked) before the end of p, the rest is set aside, to be handled
// once the pause is over: a peer that sends many requests at once gets no
// more answers queued than its limit allows. owned says whether p is the
// connection's to keep; otherwise the rest is copied.
func (c *Conn) readFrames(p []byte, owned bool) {
	// fresh: a message ended in p, so whatever is left half-read began in
	// p, and its deadline starts now. Otherwise a client that streams
	// messages back to back, with reads never ending between two, would
	// be held to one deadline for all of them.
	fresh := false
	for len(p) > 0 && c.proceed(p, owned) {
		m, n, ok, err := c.rd.Next(p)
		p = p[n:]
		if err != nil {
			c.fail(err)
			return
		}
		if !ok {
			break
		}
		if m.Compressed {
			if m.Payload, err = c.srv.inflaters.inflate(m.Payload, c.rd.limit(), m.OpCode == ws.OpText); err != nil {
				c.fail(err)
				return
			}
			c.srv.messagesInflated.Add(1)
		}
		// A control frame inside a fragmented message leaves the reader
		// busy: the message's deadline goes on.
		fresh = fresh || c.rd.Idle()
		c.handleMessage(m)
	}
	c.mu.Lock()
	if c.state == stateOpen {
		c.lastSeen = c.srv.ticks()
		c.set(flagPinged, false)
		switch {
		case c.rd.Idle():
			c.deadline = 0
		case c.srv.cfg.FrameTimeout > 0 && (fresh || c.deadline == 0):
			c.deadline = c.srv.deadlineAfter(c.srv.cfg.FrameTimeout)
		}
	}
	c.mu.Unlock()
}

// proceed reports whether the next message in p, input not yet handled,
// may be handled: not once the connection is closing, nor while it is
// paused, when p is set aside.
func (c *Conn) proceed(p []byte, owned bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateOpen {
		return false
	}
	if !c.pausedLocked() {
		return true
	}
	if !owned {
		p = bytes.Clone(p)
	}
	c.queueLocked().unread = p
	return false
}

// handleMessage acts on one message.
func (c *Conn) handleMessage(m Message) {
	switch m.OpCode {
	case ws.OpText, ws.OpBinary:
		c.srv.messagesIn.Add(1)
		c.handler.OnMessage(c, m.OpCode, m.Payload)
	case ws.OpPing:
		c.mu.Lock()
		if c.state == stateOpen {
			c.pongLocked(m.Payload)
		}
		c.mu.Unlock()
	case ws.OpPong:
		// Unsolicited pongs are allowed and ignored.
	case ws.OpClose:
		// Echo the peer's code (RFC 6455 section 5.5.1); an empty close is
		// answered with 1000.
		code := ws.StatusNormalClosure
		if len(m.Payload) >= 2 {
			code = ws.StatusCode(uint16(m.Payload[0])<<8 | uint16(m.Payload[1]))
		}
		c.mu.Lock()
		c.set(flagPeerClosed, c.state == stateOpen) // an answer to our own close frame changes nothing
		c.mu.Unlock()
		c.Close(code, "")
	}
}

// fail fails the connection for a protocol violation: the close frame with
// its code, a half-close and a short drain.
func (c *Conn) fail(err error) {
	code, reason := ws.StatusProtocolError, err.Error()
	if ce, ok := err.(*CloseError); ok {
		code, reason = ce.Code, ce.Reason
	}
	c.srv.protocolErrors.Add(1)
	c.srv.log.Debug("wsconn: failing connection", "remote", c.RemoteAddr(), "code", code, "reason", reason)
	c.Close(code, reason)
}
