package bench

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout/fanout/poller"
	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"
)

// connKind says what a client connection does once it is open.
type connKind uint8

const (
	kindSubscriber connKind = iota // counts and times broadcast receipts
	kindEcho                       // round trips on /echo, one at a time
	kindChurn                      // closes at once; a new one takes its slot
)

// connState is where a client connection is in its life.
type connState uint8

const (
	stConnecting connState = iota // non-blocking connect in progress
	stHandshake                   // upgrade request sent, waiting for 101
	stOpen                        // WebSocket open
	stClosing                     // close frame sent or received; waiting for EOF
	stReleased                    // fd closed; nothing more happens
)

// conn is one client connection. Its fields are guarded by mu, which a turn
// of the pool holds throughout; win, recv and deadline are atomics so that
// the sweep and collect can read them without it.
type conn struct {
	mu        sync.Mutex
	e         *engine
	plan      *dialPlan
	fd        int
	idx       int // in engine.conns, -1 when not registered
	state     connState
	dialing   bool // not yet settled in its plan (and holds a slot of plan.sem, if any)
	sentClose bool
	gotClose  bool
	closeCode uint16
	in        []byte // unparsed bytes left from the last read
	out       []byte // bytes not yet written
	frag      []byte // data of a fragmented message
	fragOp    ws.OpCode
	fragRSV1  bool // the fragmented message is compressed

	deadline atomic.Int64 // unix nanoseconds; 0: none
	isOpen   atomic.Bool  // the upgrade succeeded (and it may since have closed)

	// kindSubscriber
	win  atomic.Uint32 // window the counts below belong to
	recv atomic.Uint32 // receipts in win
	last uint64        // last seq received in win

	// kindEcho
	sentAt int64
}

func (s connState) String() string {
	switch s {
	case stConnecting:
		return "connect"
	case stHandshake:
		return "upgrade"
	case stOpen:
		return "open"
	case stClosing:
		return "close"
	}
	return "released"
}

// arm asks the poller for the connection's next event.
func (c *conn) arm() {
	ev := poller.Readable
	if len(c.out) > 0 || c.state == stConnecting {
		ev |= poller.Writable
	}
	if err := c.e.poller.Arm(c.fd, ev); err != nil {
		c.release(err)
	}
}

// write writes b, or queues what does not fit; false if the connection
// failed (and was released).
func (c *conn) write(b []byte) bool {
	if len(c.out) > 0 {
		c.out = append(c.out, b...)
		return true
	}
	for len(b) > 0 {
		n, err := unix.Write(c.fd, b)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			c.release(fmt.Errorf("write: %w", err))
			return false
		}
		b = b[n:]
	}
	if len(b) > 0 {
		c.out = append(c.out, b...)
	}
	return true
}

// flush writes queued bytes; false if the connection failed.
func (c *conn) flush() bool {
	out := c.out
	c.out = c.out[:0]
	ok := c.write(out)
	if len(c.out) == 0 && cap(c.out) > 64<<10 {
		c.out = nil
	}
	return ok
}

// sendFrame writes a masked frame, encoded in *scratch.
func (c *conn) sendFrame(scratch *[]byte, op ws.OpCode, payload []byte) bool {
	*scratch = appendClientFrame((*scratch)[:0], op, payload, ws.NewMask())
	return c.write(*scratch)
}

// sendClose starts the close handshake with code.
func (c *conn) sendClose(scratch *[]byte, code uint16) bool {
	if c.sentClose || c.state == stReleased {
		return true
	}
	c.sentClose = true
	if c.state == stOpen {
		c.state = stClosing
	}
	c.deadline.Store(time.Now().Add(closeTimeout).UnixNano())
	*scratch = appendCloseFrame((*scratch)[:0], code, ws.NewMask())
	return c.write(*scratch)
}

// consume parses data just read; false if the connection was released.
func (c *conn) consume(s *slot, data []byte, now int64) bool {
	if len(c.in) > 0 {
		c.in = append(c.in, data...)
		data = c.in
	}
	rest, ok := c.parse(s, data, now)
	if !ok {
		return false
	}
	switch {
	case len(rest) == 0:
		if cap(c.in) > 64<<10 {
			c.in = nil
		} else {
			c.in = c.in[:0]
		}
	default:
		c.in = append(c.in[:0], rest...) // memmove: rest may lie in c.in
	}
	return true
}

// parse handles what data holds and returns the incomplete rest.
func (c *conn) parse(s *slot, data []byte, now int64) ([]byte, bool) {
	if c.state == stHandshake {
		n, err := parseUpgradeResponse(data, c.e.accept)
		if err != nil {
			c.release(err)
			return nil, false
		}
		if n == 0 {
			return data, true
		}
		data = data[n:]
		if !c.opened(s) {
			return nil, false
		}
	}
	for {
		h, ok := parseFrameHeader(data)
		if !ok {
			return data, true
		}
		// RSV1 (a compressed message) only where compression was offered,
		// and only on the first frame of a data message.
		rsv1 := h.rsv == 4 && c.plan.offer != "" && (h.op == ws.OpText || h.op == ws.OpBinary)
		if h.masked || h.rsv != 0 && !rsv1 || h.length > maxFrameBytes {
			c.release(fmt.Errorf("protocol error from server: masked=%v rsv=%d length=%d", h.masked, h.rsv, h.length))
			return nil, false
		}
		if int64(len(data)-h.size) < h.length {
			return data, true
		}
		end := h.size + int(h.length)
		payload := data[h.size:end]
		data = data[end:]
		if !c.frame(s, h, payload, now) {
			return nil, false
		}
	}
}

// opened runs when the upgrade succeeded.
func (c *conn) opened(s *slot) bool {
	c.state = stOpen
	c.deadline.Store(0)
	c.isOpen.Store(true)
	c.e.open.Add(1)
	if c.dialing {
		c.dialing = false
		c.plan.settle(true)
	}
	switch c.plan.kind {
	case kindChurn:
		return c.sendClose(&s.scratch, closeCodeNormal)
	case kindEcho:
		if c.e.echoRunning.Load() {
			return c.sendEcho(&s.scratch)
		}
	}
	return true
}

// frame handles one complete frame.
func (c *conn) frame(s *slot, h frameHeader, payload []byte, now int64) bool {
	switch h.op {
	case ws.OpPing:
		return c.sendFrame(&s.scratch, ws.OpPong, payload)
	case ws.OpPong:
		return true
	case ws.OpClose:
		if c.gotClose {
			return true
		}
		c.gotClose = true
		code := uint16(1005) // no status
		if len(payload) >= 2 {
			code = uint16(payload[0])<<8 | uint16(payload[1])
		}
		if c.sentClose {
			// The server answered our close; it closes TCP next.
			return true
		}
		c.closeCode = code
		c.state = stClosing
		reply := code
		if reply == 1005 {
			reply = 0
		}
		return c.sendClose(&s.scratch, reply)
	case ws.OpText, ws.OpBinary:
		if !h.fin {
			c.frag = append(c.frag[:0], payload...)
			c.fragOp, c.fragRSV1 = h.op, h.rsv == 4
			return true
		}
		return c.dataMessage(s, h.op, payload, h.rsv == 4, now)
	case ws.OpContinuation:
		c.frag = append(c.frag, payload...)
		if !h.fin {
			return true
		}
		ok := c.dataMessage(s, c.fragOp, c.frag, c.fragRSV1, now)
		c.frag = nil
		return ok
	}
	c.release(fmt.Errorf("protocol error from server: opcode %d", h.op))
	return false
}

// dataMessage handles one complete data message, compressed or not: of a
// compressed one, the start (see slot.inflated).
func (c *conn) dataMessage(s *slot, op ws.OpCode, p []byte, compressed bool, now int64) bool {
	if compressed {
		if p = s.inflated(p); p == nil {
			c.release(errors.New("protocol error from server: a compressed message does not inflate"))
			return false
		}
	}
	return c.message(s, op, p, now)
}

// message handles one complete data message.
func (c *conn) message(s *slot, op ws.OpCode, p []byte, now int64) bool {
	e := c.e
	switch c.plan.kind {
	case kindSubscriber:
		if op != ws.OpText {
			e.controls.Add(1)
			return true
		}
		// A server may join the messages queued for a subscriber into
		// one, separated by newlines, as gorilla's chat example does
		// (the gorillahub peer): each counts. The bench's data has no
		// newline of its own.
		for len(p) > 0 {
			var one []byte
			one, p, _ = bytes.Cut(p, newline)
			c.broadcast(s, one, now)
		}
	case kindEcho:
		if len(p) != len(e.echoPayload) {
			e.echoErrors.Add(1)
		}
		if c.sentAt == 0 {
			return true
		}
		rtt := now - c.sentAt
		c.sentAt = 0
		s.mu.Lock()
		_ = s.hist.RecordValue(max(rtt/1000, histLowestMicros))
		s.mu.Unlock()
		e.echoes.Add(1)
		if e.echoRunning.Load() {
			return c.sendEcho(&s.scratch)
		}
	}
	return true
}

var newline = []byte{'\n'}

// broadcast counts one message of a subscriber, p, received at now.
func (c *conn) broadcast(s *slot, p []byte, now int64) {
	e := c.e
	seq, t, ok := parseBroadcast(p)
	if !ok {
		e.controls.Add(1)
		return
	}
	win := e.win.Load()
	if c.win.Load() != win {
		c.win.Store(win)
		c.recv.Store(0)
		c.last = 0
	}
	if seq <= c.last {
		e.duplicates.Add(1)
		return
	}
	c.last = seq
	c.recv.Add(1)
	e.receipts.Add(1)
	if t > 0 {
		lat := now - t
		s.mu.Lock()
		_ = s.hist.RecordValue(max(lat/1000, histLowestMicros))
		if s.lastLat != nil && lat > s.lastLat[seq] {
			s.lastLat[seq] = lat
		}
		s.mu.Unlock()
	}
}

// sendEcho sends the echo payload and notes when.
func (c *conn) sendEcho(scratch *[]byte) bool {
	c.sentAt = time.Now().UnixNano()
	return c.sendFrame(scratch, ws.OpBinary, c.e.echoPayload)
}

// eof handles the server's end of stream.
func (c *conn) eof() {
	if c.state == stClosing {
		c.release(nil)
		return
	}
	c.release(errors.New("connection closed by server without a close frame"))
}

// release closes the connection's fd and settles its accounting. err is
// nil for a completed close handshake. It is idempotent.
func (c *conn) release(err error) {
	if c.state == stReleased {
		return
	}
	e := c.e
	wasOpen := c.state >= stOpen
	serverClosed := wasOpen && !c.sentClose
	if c.fd >= 0 {
		_ = e.poller.Del(c.fd)
		_ = unix.Close(c.fd)
	}
	c.state = stReleased
	c.deadline.Store(0)
	c.in, c.out, c.frag = nil, nil, nil
	if c.dialing {
		c.dialing = false
		c.plan.settle(false)
	}
	if !wasOpen {
		e.dialFails.Add(1)
	}
	if wasOpen {
		e.open.Add(-1)
	}
	code := c.closeCode
	if serverClosed && code == 0 {
		code = closeCodeAbnorml
	}

	e.mu.Lock()
	if c.idx >= 0 {
		last := len(e.conns) - 1
		e.conns[c.idx] = e.conns[last]
		e.conns[c.idx].idx = c.idx
		e.conns[last] = nil
		e.conns = e.conns[:last]
		c.idx = -1
	}
	if !wasOpen && err != nil {
		e.countError(err)
	}
	if c.plan.kind == kindSubscriber && wasOpen {
		e.winClosed++
		if c.win.Load() == e.win.Load() {
			e.winRecv += int64(c.recv.Load())
		}
		if serverClosed {
			e.closeCodes[code]++
		}
	}
	e.mu.Unlock()

	if c.plan.kind == kindChurn {
		if wasOpen && err == nil {
			e.cycles.Add(1)
		} else {
			e.churnFailed.Add(1)
			if e.churnLimited.Load() {
				e.churnBudget.Add(1) // the cycle is still to be done
			}
		}
		switch {
		case !e.churnRunning.Load() || !e.claimCycle():
			e.churnSlotDone()
		case wasOpen:
			e.start(c.plan)
		default:
			// A failed connect may fail again at once: pause, so a
			// broken target does not turn into a busy loop.
			time.AfterFunc(churnRetryDelay, func() { e.start(c.plan) })
		}
	}
}
