package bench

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/fanout/fanout/poller"
)

// The engine is a worker process's fleet of client connections: raw
// non-blocking sockets on the project's own reactor (poller), served by a
// small pool of goroutines. No goroutine per connection.

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

const (
	readBufferBytes  = 64 << 10 // per pool worker
	maxReadsPerTurn  = 4        // then re-arm, so one busy connection cannot starve others
	maxFrameBytes    = 16 << 20 // larger server frames fail the connection
	closeCodeNormal  = 1000
	closeCodeAbnorml = 1006 // no close frame: EOF or an error
	sweepInterval    = 200 * time.Millisecond
	closeTimeout     = 3 * time.Second
	churnRetryDelay  = 10 * time.Millisecond
)

// histogram bounds, in microseconds: 1 µs to 10 minutes at 3 significant
// digits.
const (
	histLowestMicros  = 1
	histHighestMicros = 600_000_000
	histSigFigs       = 3
)

func newHistogram() *hdrhistogram.Histogram {
	return hdrhistogram.New(histLowestMicros, histHighestMicros, histSigFigs)
}

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

	deadline atomic.Int64 // unix nanoseconds; 0: none
	isOpen   atomic.Bool  // the upgrade succeeded (and it may since have closed)

	// kindSubscriber
	win  atomic.Uint32 // window the counts below belong to
	recv atomic.Uint32 // receipts in win
	last uint64        // last seq received in win

	// kindEcho
	sentAt int64
}

// job is what the poller hands to the pool: a connection and its events.
type job struct {
	c  *conn
	ev poller.Event
}

// slot is the state of one pool worker: its read buffer, its write
// scratch buffer and its share of the measurements.
type slot struct {
	buf     []byte
	scratch []byte

	mu      sync.Mutex // guards what follows; collect reads it
	hist    *hdrhistogram.Histogram
	lastLat map[uint64]int64 // seq -> latest receipt's latency (ns), when tracking
}

// dialPlan is a group of connections to open: where to, from where, how
// many at once, and what they do once open.
type dialPlan struct {
	kind     connKind
	target   netip.AddrPort
	sources  []netip.Addr // none: let the kernel choose
	request  []byte       // the upgrade request of every connection; nil: minted
	host     string       // of the request, to build a minted one
	path     string
	key      string
	auth     *credentials
	minted   atomic.Int64 // tokens minted, for each a distinct sub
	timeout  time.Duration
	sem      chan struct{} // dial concurrency; nil for churn
	n        int64         // 0: unbounded (churn)
	ok       atomic.Int64
	failed   atomic.Int64
	next     atomic.Int64 // index of the next connection, for the source
	doneOnce sync.Once
	done     chan struct{}
}

// addrs returns fresh socket addresses for the next connection: a
// unix.Sockaddr is scratch space for the syscall that takes it, so
// connections being started concurrently cannot share one.
func (p *dialPlan) addrs() (target, source unix.Sockaddr) {
	target = sockaddr(p.target.Addr(), int(p.target.Port()))
	if len(p.sources) > 0 {
		i := p.next.Add(1) - 1
		source = sockaddr(p.sources[int(i%int64(len(p.sources)))], 0)
	}
	return target, source
}

// upgrade returns the upgrade request of the plan's next connection: the
// same for all, or one with a token minted for it.
func (p *dialPlan) upgrade() ([]byte, error) {
	if p.request != nil {
		return p.request, nil
	}
	sub := fmt.Sprintf("bench-%d-%d", os.Getpid(), p.minted.Add(1))
	token, err := p.auth.token(sub, time.Now())
	if err != nil {
		return nil, err
	}
	return upgradeRequest(p.host, p.path, p.key, token), nil
}

// settle counts a connection of the plan as open or failed and gives back
// its dial slot.
func (p *dialPlan) settle(ok bool) {
	if p.sem != nil {
		<-p.sem
	}
	if ok {
		p.ok.Add(1)
	} else {
		p.failed.Add(1)
	}
	if p.n > 0 && p.ok.Load()+p.failed.Load() >= p.n {
		p.doneOnce.Do(func() { close(p.done) })
	}
}

// engine holds a worker process's client connections.
type engine struct {
	log    *slog.Logger
	poller *poller.Poller
	pool   *poller.Pool[job]
	slots  []*slot
	key    string
	accept string
	stop   chan struct{}
	wg     sync.WaitGroup

	mu          sync.Mutex // guards conns and the window's close accounting
	conns       []*conn
	winClosed   int64            // subscribers released in the current window
	winRecv     int64            // their receipts
	closeCodes  map[uint16]int64 // server-initiated closes in the window, by code
	errorCounts map[string]int64 // dial failures, by message

	win        atomic.Uint32 // current measurement window
	trackLast  atomic.Bool   // keep per-seq latest latency (fanout)
	open       atomic.Int64  // connections open now
	dialFails  atomic.Int64  // connections that failed before they opened, ever
	receipts   atomic.Int64  // broadcast receipts in the window
	controls   atomic.Int64  // text messages without a seq
	duplicates atomic.Int64  // seq not above the last one seen

	echoRunning atomic.Bool
	echoPayload []byte // set while no echo runs
	echoes      atomic.Int64
	echoErrors  atomic.Int64

	churnRunning atomic.Bool
	churnActive  atomic.Int64  // slots still cycling
	churnLimited atomic.Bool   // the run stops after a number of cycles
	churnBudget  atomic.Int64  // with churnLimited: cycles not yet started
	cycles       atomic.Int64  // completed churn cycles in the window
	churnFailed  atomic.Int64  // churn connections that failed in the window
	churnIdle    chan struct{} // signalled when churnActive drops to 0
}

// newEngine starts an engine with workers pool goroutines (0: GOMAXPROCS).
func newEngine(log *slog.Logger, workers int) (*engine, error) {
	if workers <= 0 {
		workers = runtime.GOMAXPROCS(0)
	}
	p, err := poller.New()
	if err != nil {
		return nil, fmt.Errorf("bench: start poller: %w", err)
	}
	var k [16]byte
	_, _ = rand.Read(k[:])
	e := &engine{
		log:         log,
		poller:      p,
		key:         base64.StdEncoding.EncodeToString(k[:]),
		stop:        make(chan struct{}),
		closeCodes:  make(map[uint16]int64),
		errorCounts: make(map[string]int64),
		churnIdle:   make(chan struct{}, 1),
	}
	e.accept = acceptKey(e.key)
	e.slots = make([]*slot, workers)
	for i := range e.slots {
		e.slots[i] = &slot{buf: make([]byte, readBufferBytes), hist: newHistogram()}
	}
	e.pool = poller.NewPool(workers, 4096, e.serve)
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		e.sweep()
	}()
	return e, nil
}

// close releases every connection and stops the engine.
func (e *engine) close() {
	e.churnRunning.Store(false)
	e.echoRunning.Store(false)
	close(e.stop)
	e.wg.Wait()
	for _, c := range e.snapshot(func(*conn) bool { return true }) {
		c.mu.Lock()
		c.release(errors.New("shutting down"))
		c.mu.Unlock()
	}
	_ = e.poller.Close()
	e.pool.Close()
}

// snapshot returns the registered connections that keep reports true.
func (e *engine) snapshot(keep func(*conn) bool) []*conn {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []*conn
	for _, c := range e.conns {
		if keep(c) {
			out = append(out, c)
		}
	}
	return out
}

func (e *engine) register(c *conn) {
	e.mu.Lock()
	c.idx = len(e.conns)
	e.conns = append(e.conns, c)
	e.mu.Unlock()
}

// sweep fails connections past their deadline: connects and handshakes
// that take too long, and closes the server does not finish.
func (e *engine) sweep() {
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-e.stop:
			return
		case <-t.C:
		}
		now := time.Now().UnixNano()
		late := e.snapshot(func(c *conn) bool {
			d := c.deadline.Load()
			return d != 0 && d < now
		})
		for _, c := range late {
			c.mu.Lock()
			if d := c.deadline.Load(); d != 0 && d < now {
				switch {
				case c.state == stClosing && c.gotClose:
					c.release(nil) // the server answered but kept TCP open
				case c.state == stClosing:
					c.release(errors.New("timeout waiting for the server's close frame"))
				default:
					c.release(fmt.Errorf("timeout in %s", c.state))
				}
			}
			c.mu.Unlock()
		}
	}
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

// dial opens connections of plan, at most cap(plan.sem) at a time, and
// returns when every one of the plan's n connections is open or failed.
func (e *engine) dial(plan *dialPlan) {
	for range plan.n {
		select {
		case plan.sem <- struct{}{}:
		case <-e.stop:
			return
		}
		e.start(plan)
	}
	select {
	case <-plan.done:
	case <-e.stop:
	}
}

// start begins one connection of plan. The caller holds a slot of
// plan.sem, if the plan has one; the connection gives it back once it is
// open or has failed.
func (e *engine) start(plan *dialPlan) {
	c := &conn{e: e, plan: plan, idx: -1, dialing: true, fd: -1}
	c.deadline.Store(time.Now().Add(plan.timeout).UnixNano())
	c.mu.Lock()
	defer c.mu.Unlock()
	fd, err := connectNonblocking(plan.addrs())
	if err != nil {
		c.release(err)
		return
	}
	c.fd = fd
	e.register(c)
	if err := e.poller.Add(fd, poller.Writable, func(ev poller.Event) { e.pool.Submit(job{c, ev}) }); err != nil {
		c.release(err)
	}
}

// serve is a turn of the pool for one connection.
func (e *engine) serve(worker int, j job) {
	c, s := j.c, e.slots[worker]
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == stReleased {
		return
	}
	if c.state == stConnecting {
		if j.ev&(poller.Writable|poller.Hangup) == 0 {
			c.arm()
			return
		}
		if err := socketError(c.fd); err != nil {
			c.release(err)
			return
		}
		c.state = stHandshake
		req, err := c.plan.upgrade()
		if err != nil {
			c.release(err)
			return
		}
		if !c.write(req) {
			return
		}
	}
	if len(c.out) > 0 && !c.flush() {
		return
	}
	for range maxReadsPerTurn {
		n, err := unix.Read(c.fd, s.buf)
		if err == unix.EINTR {
			continue
		}
		if err == unix.EAGAIN {
			break
		}
		if err != nil {
			c.release(fmt.Errorf("read: %w", err))
			return
		}
		if n == 0 {
			c.eof()
			return
		}
		// Stamped per read, not once per turn: a turn's later reads
		// would otherwise be dated before they happened.
		now := time.Now().UnixNano()
		if !c.consume(s, s.buf[:n], now) {
			return
		}
		if n < len(s.buf) {
			break
		}
	}
	c.arm()
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
		if h.masked || h.rsv != 0 || h.length > maxFrameBytes {
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
			c.fragOp = h.op
			return true
		}
		return c.message(s, h.op, payload, now)
	case ws.OpContinuation:
		c.frag = append(c.frag, payload...)
		if !h.fin {
			return true
		}
		ok := c.message(s, c.fragOp, c.frag, now)
		c.frag = nil
		return ok
	}
	c.release(fmt.Errorf("protocol error from server: opcode %d", h.op))
	return false
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

// claimCycle takes one cycle from the budget of a run limited in cycles,
// and reports whether there was one to take. A run limited in time always
// has one.
func (e *engine) claimCycle() bool {
	if !e.churnLimited.Load() {
		return true
	}
	for {
		b := e.churnBudget.Load()
		if b <= 0 {
			return false
		}
		if e.churnBudget.CompareAndSwap(b, b-1) {
			return true
		}
	}
}

// churnSlotDone retires a churn slot; the last one wakes runChurn.
func (e *engine) churnSlotDone() {
	if e.churnActive.Add(-1) == 0 {
		select {
		case e.churnIdle <- struct{}{}:
		default:
		}
	}
}

// countError counts a failure by its message; e.mu is held.
func (e *engine) countError(err error) {
	msg := err.Error()
	if _, ok := e.errorCounts[msg]; !ok && len(e.errorCounts) >= 20 {
		msg = "other errors"
	}
	e.errorCounts[msg]++
}

// resetWindow starts a measurement window: receipts, closes and the
// histograms start from zero. track keeps each seq's latest latency.
func (e *engine) resetWindow(track bool) {
	e.mu.Lock()
	e.win.Add(1)
	e.winClosed, e.winRecv = 0, 0
	clear(e.closeCodes)
	e.mu.Unlock()
	e.trackLast.Store(track)
	e.receipts.Store(0)
	e.controls.Store(0)
	e.duplicates.Store(0)
	e.echoes.Store(0)
	e.echoErrors.Store(0)
	e.cycles.Store(0)
	e.churnFailed.Store(0)
	for _, s := range e.slots {
		s.mu.Lock()
		s.hist.Reset()
		s.lastLat = nil
		if track {
			s.lastLat = make(map[uint64]int64)
		}
		s.mu.Unlock()
	}
}

// windowCounts is what collect reports of a window.
type windowCounts struct {
	Live         int64            `json:"live"`          // subscribers open now
	LiveRecv     int64            `json:"live_recv"`     // their receipts in the window
	LiveShort    int64            `json:"live_short"`    // their missing receipts (drops)
	Closed       int64            `json:"closed"`        // subscribers released during the window
	ClosedRecv   int64            `json:"closed_recv"`   // their receipts
	Receipts     int64            `json:"receipts"`      // all receipts in the window
	Controls     int64            `json:"controls"`      // text messages without a seq
	Duplicates   int64            `json:"duplicates"`    // seq not above the last one seen
	CloseCodes   map[string]int64 `json:"close_codes"`   // server-initiated closes, by code
	Errors       map[string]int64 `json:"errors"`        // dial failures, by message
	Histogram    []byte           `json:"histogram"`     // HdrHistogram V2, microseconds
	LastLatency  map[string]int64 `json:"last_latency"`  // seq -> latest receipt's latency, ns
	Echoes       int64            `json:"echoes"`        // echo round trips
	EchoErrors   int64            `json:"echo_errors"`   // echoes of the wrong length
	Cycles       int64            `json:"cycles"`        // completed churn cycles
	ChurnFailed  int64            `json:"churn_failed"`  // churn connections that failed
	OpenNow      int64            `json:"open_now"`      // connections open now, any kind
	WorkerCPUSec float64          `json:"worker_cpu_s"`  // this process's CPU time so far
	MaxRSSBytes  int64            `json:"max_rss_bytes"` // this process's peak RSS
}

// collect reports the window: expected is the number of messages every
// subscriber open at its start should have received.
func (e *engine) collect(expected int64) (windowCounts, error) {
	w := windowCounts{CloseCodes: map[string]int64{}, Errors: map[string]int64{}}
	win := e.win.Load()
	e.mu.Lock()
	for _, c := range e.conns {
		if c.plan.kind != kindSubscriber {
			continue
		}
		// Connections not yet open are no subscribers yet.
		if c.isOpen.Load() {
			var r int64
			if c.win.Load() == win {
				r = int64(c.recv.Load())
			}
			w.Live++
			w.LiveRecv += r
			if expected > r {
				w.LiveShort += expected - r
			}
		}
	}
	w.Closed, w.ClosedRecv = e.winClosed, e.winRecv
	for code, n := range e.closeCodes {
		w.CloseCodes[fmt.Sprint(code)] = n
	}
	for msg, n := range e.errorCounts {
		w.Errors[msg] = n
	}
	e.mu.Unlock()
	w.Receipts = e.receipts.Load()
	w.Controls = e.controls.Load()
	w.Duplicates = e.duplicates.Load()
	w.Echoes = e.echoes.Load()
	w.EchoErrors = e.echoErrors.Load()
	w.Cycles = e.cycles.Load()
	w.ChurnFailed = e.churnFailed.Load()
	w.OpenNow = e.open.Load()

	merged := newHistogram()
	var last map[uint64]int64
	for _, s := range e.slots {
		s.mu.Lock()
		merged.Merge(s.hist)
		for seq, lat := range s.lastLat {
			if last == nil {
				last = make(map[uint64]int64)
			}
			last[seq] = max(last[seq], lat)
		}
		s.mu.Unlock()
	}
	enc, err := merged.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return w, fmt.Errorf("bench: encode histogram: %w", err)
	}
	w.Histogram = enc
	if last != nil {
		w.LastLatency = make(map[string]int64, len(last))
		keys := make([]uint64, 0, len(last))
		for k := range last {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		for _, k := range keys {
			w.LastLatency[fmt.Sprint(k)] = last[k]
		}
	}
	w.WorkerCPUSec, w.MaxRSSBytes = selfUsage()
	return w, nil
}

// closeAll starts the close handshake on every open connection of kind and
// waits until they are released or timeout passes. It returns how many
// were still held at the end.
func (e *engine) closeAll(kind connKind, timeout time.Duration) int {
	var scratch []byte
	conns := e.snapshot(func(c *conn) bool { return c.plan.kind == kind })
	for _, c := range conns {
		c.mu.Lock()
		switch c.state {
		case stOpen:
			if c.sendClose(&scratch, closeCodeNormal) && len(c.out) > 0 {
				c.arm()
			}
		case stConnecting, stHandshake:
			c.release(errors.New("closed before open"))
		}
		c.mu.Unlock()
	}
	deadline := time.Now().Add(timeout)
	for {
		left := len(e.snapshot(func(c *conn) bool { return c.plan.kind == kind }))
		if left == 0 || time.Now().After(deadline) {
			return left
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startEcho makes every open echo connection send payload and go on
// sending it after each echo until stopEcho.
func (e *engine) startEcho(payload []byte) {
	e.echoPayload = payload
	e.echoRunning.Store(true)
	var scratch []byte
	for _, c := range e.snapshot(func(c *conn) bool { return c.plan.kind == kindEcho }) {
		c.mu.Lock()
		if c.state == stOpen && c.sentAt == 0 && c.sendEcho(&scratch) && len(c.out) > 0 {
			c.arm()
		}
		c.mu.Unlock()
	}
}

// runChurn keeps concurrency churn connections of plan cycling, then
// waits (up to closeTimeout more) for the last ones to finish. It runs for
// d or, if cycles is positive, until cycles cycles are complete; failed
// connections do not count, and are tried again. A run limited in cycles
// stops early when no cycle completes for stall, so that a server that
// stopped answering does not keep the worker forever.
func (e *engine) runChurn(plan *dialPlan, concurrency int, d time.Duration, cycles int64, stall time.Duration) {
	select {
	case <-e.churnIdle: // a stale signal from an earlier run
	default:
	}
	e.churnLimited.Store(cycles > 0)
	e.churnBudget.Store(cycles)
	e.churnRunning.Store(true)
	e.churnActive.Store(int64(concurrency))
	for range concurrency {
		if e.claimCycle() {
			e.start(plan)
		} else {
			e.churnSlotDone()
		}
	}
	if cycles > 0 {
		e.awaitCycles(stall)
	} else {
		select {
		case <-time.After(d):
		case <-e.stop:
		}
	}
	e.churnRunning.Store(false)
	select {
	case <-e.churnIdle:
	case <-time.After(plan.timeout + closeTimeout):
	case <-e.stop:
	}
	e.churnLimited.Store(false)
}

// awaitCycles waits until every slot of a run limited in cycles is done,
// or no cycle completed for stall. It leaves churnIdle signalled if the
// slots are done, for runChurn.
func (e *engine) awaitCycles(stall time.Duration) {
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	last, progressed := e.cycles.Load(), time.Now()
	for {
		select {
		case <-e.churnIdle:
			e.churnIdle <- struct{}{} // for runChurn; nobody else sends now
			return
		case <-e.stop:
			return
		case <-t.C:
		}
		if n := e.cycles.Load(); n != last {
			last, progressed = n, time.Now()
		} else if stall > 0 && time.Since(progressed) > stall {
			e.log.Warn("churn: no cycle completed; stopping", "stall", stall, "cycles", n)
			return
		}
	}
}

// selfUsage returns the process's CPU time (user + system) in seconds and
// its peak RSS in bytes.
func selfUsage() (float64, int64) {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0, 0
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	return cpu.Seconds(), maxRSSBytes(ru.Maxrss)
}
