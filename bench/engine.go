package bench

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
	"golang.org/x/sys/unix"

	"github.com/fanout/fanout/poller"
)

// The engine is a worker process's fleet of client connections: raw
// non-blocking sockets on the project's own reactor (poller), served by a
// small pool of goroutines. No goroutine per connection.

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
	inflate *prefixInflater // made at the first compressed message

	mu      sync.Mutex // guards what follows; collect reads it
	hist    *hdrhistogram.Histogram
	lastLat map[uint64]int64 // seq -> latest receipt's latency (ns), when tracking
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
	tgt, target, source := plan.addrs()
	fd, err := connectNonblocking(target, source)
	if err != nil {
		c.release(err)
		return
	}
	c.fd = fd
	e.register(c)
	req, err := plan.upgrade(tgt)
	if err != nil {
		c.release(err)
		return
	}
	// On loopback a connect has most often completed by the time it
	// returns: the request goes out at once, with no turn spent waiting
	// for the socket to become writable. A socket still connecting
	// refuses it (EAGAIN), and the turn at writability sends it.
	ev := poller.Writable
	switch n, err := unix.Write(fd, req); err {
	case nil:
		c.state = stHandshake
		c.out = append(c.out, req[n:]...)
		ev = poller.Readable
		if len(c.out) > 0 {
			ev |= poller.Writable
		}
	case unix.EAGAIN, unix.EINTR:
		c.out = append(c.out, req...)
	default:
		c.release(fmt.Errorf("connect %s: %w", plan.targets[tgt].addr, err))
		return
	}
	if err := e.poller.Add(fd, ev, func(ev poller.Event) { e.pool.Submit(job{c, ev}) }); err != nil {
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
		c.state = stHandshake // the request, queued by start, goes out below
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

// inflated returns the start of the compressed message p, as much as a
// subscriber reads of a message (see prefixInflater).
func (s *slot) inflated(p []byte) []byte {
	if s.inflate == nil {
		s.inflate = new(prefixInflater)
	}
	return s.inflate.prefix(p)
}
