package wsconn

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/fanout/fanout/poller"
)

// Handler serves the WebSocket connections that Config.Upgrade routes to it.
// Its methods for one connection are called by one worker at a time, never
// concurrently, and must not block: they run on the server's worker pool.
type Handler interface {
	// OnOpen is called once the connection is open, before the upgrade
	// response is written: what OnOpen sends with Conn.SendOnOpen goes out
	// with the response, in its write, ahead of everything else.
	OnOpen(c *Conn)
	// OnMessage is called for each complete data message, op being
	// ws.OpText (payload is valid UTF-8) or ws.OpBinary. payload is valid only
	// during the call.
	OnMessage(c *Conn, op ws.OpCode, payload []byte)
	// OnClose is called once, after the connection is released.
	OnClose(c *Conn)
}

// A MessageLimiter is a Handler whose messages have a size limit of their
// own, below Config.MaxMessageBytes: a protocol whose messages cannot be
// valid past some size has them refused (1009) as they arrive, before they
// are buffered, let alone parsed.
type MessageLimiter interface {
	MaxMessageBytes() int64
}

// A Drainer is a Handler that wants to know when a connection's write queue
// has emptied after Conn.NotifyDrain. OnDrain is called on the connection's
// worker, like the Handler's other methods, and must not block.
type Drainer interface {
	OnDrain(c *Conn)
}

// An Expirer is a Handler whose connections can run out of time of their
// own, such as when the token a connection was opened with expires. The
// sweep asks it about each open connection on every pass, instead of a
// timer per connection. Expired may run concurrently with the Handler's
// other methods, and must be quick.
type Expirer interface {
	// Expired reports whether c must be closed at now, and with which
	// close code and reason.
	Expired(c *Conn, now time.Time) (code ws.StatusCode, reason string, expired bool)
}

// Config configures a Server. Zero fields take the defaults below.
type Config struct {
	// Workers is the number of worker goroutines that serve ready
	// connections. Default: 2 × GOMAXPROCS, at least 4.
	Workers int
	// TurnQueue bounds the connections ready and waiting for a worker; a
	// full queue holds up the reactor (backpressure), never a shard, the
	// sweep or an HTTP handler. Default: 4096.
	TurnQueue int
	// MaxMessageBytes limits a data message (all its fragments). A longer
	// one fails the connection with close code 1009. Default: 1 MiB; at
	// most MaxMessageLimit (2 GiB - 1), which a larger value is taken as.
	MaxMessageBytes int64
	// MaxQueueBytes bounds a connection's write queue: its unwritten bytes
	// plus 48 bytes for each queued frame, what a frame costs beyond its
	// bytes. Default: 1 MiB.
	MaxQueueBytes int
	// SendBufferBytes is each connection's kernel send buffer (SO_SNDBUF),
	// set on the listening socket, whose connections take it from there:
	// it bounds what a client that does not read holds in the kernel,
	// beyond MaxQueueBytes in the server. Linux doubles it and caps it at
	// net.core.wmem_max; a BSD that refuses so large a buffer gets it
	// halved until it takes it. Default (0): the system's, which grows for
	// a client that does not read up to tcp_wmem's maximum, 4 MiB on
	// Linux. Connections that the kernel completed before Serve set it
	// keep the system's: see ListenControl.
	SendBufferBytes int
	// MaxHeaderBytes limits the request head. Default: 8 KiB.
	MaxHeaderBytes int
	// MaxBodyBytes limits the body of a plain HTTP request. Default: 1 MiB.
	MaxBodyBytes int64
	// MaxHandshakes limits connections accepted but not yet upgraded;
	// past it new connections get 503. Default: 10000.
	MaxHandshakes int
	// MaxConnections limits the connections held, upgraded or not; past
	// it new connections get 503 and are closed. Default: the process's
	// soft limit on open files (RLIMIT_NOFILE) when NewServer runs, less 64
	// kept for listeners and other files, so that the server refuses
	// clients instead of failing accept with EMFILE.
	MaxConnections int
	// MaxConnectionsPerIP limits the connections held from one source IP
	// address; past it new connections from that address get 503 and are
	// closed. Zero: no limit, the default, since behind a reverse proxy
	// every client has the proxy's address.
	MaxConnectionsPerIP int
	// HandshakeTimeout is the absolute time a client has to send its
	// request. Default: 5 s.
	HandshakeTimeout time.Duration
	// CloseTimeout is how long a closing connection may take to drain its
	// queue and close its side. Default: 2 s. Shutdown allows the drain up
	// to its context's deadline instead; once the close frame is written,
	// the peer has CloseTimeout to close its side, unless the close frame
	// answered the peer's, which ends the connection at once.
	CloseTimeout time.Duration
	// PingInterval is the silence after which an open connection is
	// pinged. Zero: no pings.
	PingInterval time.Duration
	// IdleTimeout is the silence (no frame at all; a pong counts) after
	// which an open connection is closed with 1001. Zero: no limit.
	IdleTimeout time.Duration
	// FrameTimeout is the absolute time a client has to send a whole frame,
	// or a whole fragmented message (control frames in between included),
	// from its first byte; past it the connection is closed with 1008, even
	// if bytes keep trickling in. Zero: no limit.
	FrameTimeout time.Duration

	// Upgrade routes a WebSocket upgrade request to a Handler. r is valid
	// only during the call. An error
	// from Reject rejects it with that status; a nil Handler with a nil
	// error gives 404. Default: every upgrade gets 404.
	Upgrade func(r *Request) (Handler, error)
	// HTTP serves requests that are not WebSocket upgrades, each on a
	// goroutine of its own, never on a worker. Responses are buffered; the
	// connection is kept alive for the next request (see
	// HTTPKeepAliveRequests). Default: 404.
	HTTP http.Handler
	// MaxHTTPHandlers limits the HTTP handlers running at once; past it a
	// request gets 503 with Retry-After. Default: 256.
	MaxHTTPHandlers int
	// HTTPKeepAliveRequests is the most plain HTTP requests one connection
	// may carry: the last is answered with Connection: close. 1 turns
	// keep-alive off. A request that asks for close, one that is followed
	// by more bytes before its response (pipelining), an error response
	// and a response during Shutdown close the connection too. A
	// connection between two requests counts as a handshake in flight
	// (MaxHandshakes). Default: 1000.
	HTTPKeepAliveRequests int
	// HTTPIdleTimeout is how long a kept-alive connection may wait for its
	// next request; once the request's first bytes arrive, it has
	// HandshakeTimeout to complete it. Default: 30 s.
	HTTPIdleTimeout time.Duration
	// DisableCompression turns permessage-deflate (RFC 7692) away. Without
	// it the extension is accepted when a client offers it, always with
	// server_no_context_takeover and client_no_context_takeover, so that
	// no connection keeps a compression window between messages; the
	// client's compressed messages are inflated within MaxMessageBytes.
	DisableCompression bool

	// Logger receives the server's logs. Default: slog.Default().
	Logger *slog.Logger
}

func (cfg Config) withDefaults() Config {
	if cfg.Workers <= 0 {
		cfg.Workers = max(4, 2*runtime.GOMAXPROCS(0))
	}
	if cfg.TurnQueue <= 0 {
		cfg.TurnQueue = 4096
	}
	if cfg.MaxMessageBytes <= 0 {
		cfg.MaxMessageBytes = 1 << 20
	}
	if cfg.MaxQueueBytes <= 0 {
		cfg.MaxQueueBytes = 1 << 20
	}
	if cfg.MaxHeaderBytes <= 0 {
		cfg.MaxHeaderBytes = 8 << 10
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = 1 << 20
	}
	if cfg.MaxHandshakes <= 0 {
		cfg.MaxHandshakes = 10000
	}
	if cfg.MaxConnections <= 0 {
		cfg.MaxConnections = defaultMaxConnections()
	}
	cfg.MaxConnectionsPerIP = max(cfg.MaxConnectionsPerIP, 0)
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 5 * time.Second
	}
	if cfg.CloseTimeout <= 0 {
		cfg.CloseTimeout = 2 * time.Second
	}
	if cfg.Upgrade == nil {
		cfg.Upgrade = func(*Request) (Handler, error) { return nil, nil }
	}
	if cfg.HTTP == nil {
		cfg.HTTP = http.NotFoundHandler()
	}
	if cfg.MaxHTTPHandlers <= 0 {
		cfg.MaxHTTPHandlers = 256
	}
	if cfg.HTTPKeepAliveRequests <= 0 {
		cfg.HTTPKeepAliveRequests = 1000
	}
	if cfg.HTTPIdleTimeout <= 0 {
		cfg.HTTPIdleTimeout = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg
}

// fileReserve is how many open files the default MaxConnections leaves for
// what is not a connection: listeners, the poller, logs, a data file.
const fileReserve = 64

// defaultMaxConnections is the default of Config.MaxConnections: the soft
// RLIMIT_NOFILE less fileReserve, at least 1.
func defaultMaxConnections() int {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur > math.MaxInt32 {
		return math.MaxInt32 // unknown or unlimited: no limit of our own
	}
	return max(int(lim.Cur)-fileReserve, 1)
}

const (
	readBufferBytes = 64 << 10 // per worker
	registryShards  = 16
)

// Server accepts connections on a listener and serves them on a reactor and a
// bounded worker pool, with no goroutine per connection. Accepted sockets are
// raw fds: the server keeps no net.Conn per connection.
type Server struct {
	cfg    Config
	log    *slog.Logger
	poller *poller.Poller
	pool   *poller.Pool[*Conn]
	bufs   [][]byte // read buffer per worker

	upgraders sync.Pool // *upgrader
	inflaters inflaters
	// deflateHeaders are the answers to a permessage-deflate offer, by
	// server_max_window_bits; see deflateHeaders.
	deflateHeaders [16]ws.HandshakeHeader
	handoffs       handoffs
	now            func() time.Time

	registry [registryShards]registryShard
	peers    peerCounts // only with MaxConnectionsPerIP

	mu         sync.Mutex // orders Serve's start against stopAccepting
	serving    sync.WaitGroup
	closing    atomic.Bool
	stopAccept chan struct{}
	started    time.Time
	clock      atomic.Uint32 // see ticks
	done       chan struct{} // closed when the sweep stops
	stopSweep  chan struct{}
	closeOnce  sync.Once

	connections     atomic.Int64
	websockets      atomic.Int64 // upgraded and not yet released
	handshakes      atomic.Int64 // accepted, not yet upgraded nor answered, or kept alive between HTTP requests
	accepted        atomic.Uint64
	upgrades        atomic.Uint64
	handshakeErrors atomic.Uint64
	outcomes        outcomes // handshake statuses and close codes
	refusals        refusalLog
	refused         atomic.Uint64 // at accept, for any reason
	refusedConns    atomic.Uint64 // over MaxConnections
	refusedPerIP    atomic.Uint64 // over MaxConnectionsPerIP
	httpRequests    atomic.Uint64
	httpHandlers    atomic.Int64  // HTTP handlers running
	httpBusy        atomic.Uint64 // HTTP requests refused over MaxHTTPHandlers
	httpReused      atomic.Uint64 // HTTP requests on a kept-alive connection
	protocolErrors  atomic.Uint64
	messagesIn      atomic.Uint64
	// compressedUpgrades and messagesInflated: see Stats.
	compressedUpgrades, messagesInflated atomic.Uint64
	bytesIn                              atomic.Uint64
	bytesOut                             atomic.Uint64
	pings                                atomic.Uint64
	idleCloses                           atomic.Uint64
	resets                               atomic.Uint64 // timed out with unread output: closed with RST
	handshakeAborts                      atomic.Uint64 // released before the request was complete
	turns                                atomic.Uint64 // see Stats.Turns
	writeCalls                           atomic.Uint64 // see Stats.Writes
}

// NewServer starts the reactor, the worker pool and the sweep of a server
// configured by cfg. Close or Shutdown stops them.
func NewServer(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	p, err := poller.New()
	if err != nil {
		return nil, fmt.Errorf("wsconn: start poller: %w", err)
	}
	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		poller:     p,
		now:        time.Now,
		started:    time.Now(),
		stopAccept: make(chan struct{}),
		// Built once: answering an offer allocates nothing.
		deflateHeaders: deflateHeaders(),
		done:           make(chan struct{}),
		stopSweep:      make(chan struct{}),
		handoffs:       newHandoffs(),
	}
	s.bufs = make([][]byte, cfg.Workers)
	for i := range s.bufs {
		s.bufs[i] = make([]byte, readBufferBytes)
	}
	s.pool = poller.NewPool(cfg.Workers, cfg.TurnQueue, func(worker int, c *Conn) {
		c.serve(s.bufs[worker])
	})
	go s.sweep()
	go s.runHandoffs()
	return s, nil
}

// Config returns the server's configuration, defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("wsconn: server closed")

// Serve accepts connections on ln until Shutdown or Close, and returns
// ErrServerClosed then; it closes ln before it returns. ln must be a
// *net.TCPListener (or another listener that implements syscall.Conn over a
// stream socket): connections are accepted as raw fds from its socket, on the
// server's own reactor. On Linux, Serve sets TCP_DEFER_ACCEPT on the
// socket (see Server.open).
func (s *Server) Serve(ln net.Listener) error {
	defer ln.Close()
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return fmt.Errorf("wsconn: serve: listener %T has no raw socket", ln)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return fmt.Errorf("wsconn: serve: %w", err)
	}
	lfd := -1
	if err := rc.Control(func(fd uintptr) { lfd = int(fd) }); err != nil {
		return fmt.Errorf("wsconn: serve: %w", err)
	}
	deferred := deferAccept(lfd)
	if err := setSendBuffer(lfd, s.cfg.SendBufferBytes); err != nil {
		return fmt.Errorf("wsconn: serve: %w", err)
	}
	s.mu.Lock()
	if s.closing.Load() {
		s.mu.Unlock()
		return ErrServerClosed
	}
	s.serving.Add(1)
	s.mu.Unlock()
	defer s.serving.Done()

	wake := make(chan struct{}, 1)
	err = s.poller.Add(lfd, poller.Readable, func(poller.Event) {
		select {
		case wake <- struct{}{}:
		default:
		}
	})
	if err != nil {
		return fmt.Errorf("wsconn: serve: register listener: %w", err)
	}
	defer func() { _ = s.poller.Del(lfd) }()

	backoff := time.Duration(0)
	for {
		err := s.acceptAll(lfd, deferred)
		if err != nil {
			// EMFILE and the like: the listener stays readable, so back
			// off instead of spinning, as net/http does.
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			s.log.Error("wsconn: accept failed; retrying", "err", err, "retry_in", backoff)
			select {
			case <-time.After(backoff):
			case <-s.stopAccept:
				return ErrServerClosed
			}
			continue
		}
		backoff = 0
		if err := s.poller.Arm(lfd, poller.Readable); err != nil {
			return fmt.Errorf("wsconn: serve: arm listener: %w", err)
		}
		select {
		case <-wake:
		case <-s.stopAccept:
			return ErrServerClosed
		}
	}
}

// acceptAll accepts connections until none is pending. deferred: the
// listener has TCP_DEFER_ACCEPT.
func (s *Server) acceptAll(lfd int, deferred bool) error {
	for !s.closing.Load() {
		// AcceptAddr, not Accept: it allocates nothing. The address serves
		// MaxConnectionsPerIP and is not kept; RemoteAddr asks the socket
		// (see Conn).
		fd, addr, err := poller.AcceptAddr(lfd)
		if err == unix.EAGAIN {
			return nil
		}
		if err != nil {
			return err
		}
		s.open(fd, addr.Addr().Unmap(), deferred)
	}
	return nil
}

// open takes on a socket accepted from addr and returns its connection,
// or refuses it with 503 when the server is over a limit or closing (and
// returns nil). With deferred (the listener has TCP_DEFER_ACCEPT, so the
// request has most likely arrived) the connection's first turn is queued
// at once, and the fd joins the poller when that turn ends (armLocked): an
// epoll_ctl and a wakeup of the poller fewer per connection. Otherwise the
// fd joins the poller now, and the first turn waits for the request. If
// it cannot join, a turn releases the connection (see armLocked).
func (s *Server) open(fd int, addr netip.Addr, deferred bool) *Conn {
	s.accepted.Add(1)
	var peerSlot uint32
	switch {
	case s.closing.Load():
		s.refused.Add(1)
		refuse(fd)
		return nil
	case s.handshakes.Load() >= int64(s.cfg.MaxHandshakes):
		s.refused.Add(1)
		s.logRefusal(503, "over the handshakes in flight limit")
		refuse(fd)
		return nil
	case s.connections.Load() >= int64(s.cfg.MaxConnections):
		// Only Serve adds connections, so with one listener this is exact.
		s.refused.Add(1)
		s.refusedConns.Add(1)
		s.logRefusal(503, "over the connection limit")
		refuse(fd)
		return nil
	case s.cfg.MaxConnectionsPerIP > 0:
		var ok bool
		if peerSlot, ok = s.peers.add(addr, s.cfg.MaxConnectionsPerIP); !ok {
			s.refused.Add(1)
			s.refusedPerIP.Add(1)
			s.logRefusal(503, "over the per-IP connection limit")
			refuse(fd)
			return nil
		}
	}
	// Small frames should leave at once; batching happens in writev.
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	c := &Conn{srv: s, fd: int32(fd), peerSlot: peerSlot}
	c.rd.Reset(s.cfg.MaxMessageBytes)
	c.deadline = s.deadlineAfter(s.cfg.HandshakeTimeout)
	s.handshakes.Add(1)
	if deferred {
		// The turn is claimed before the sweep can see the connection,
		// so that an expire cannot queue a second one.
		c.sched.Store(turnRunning)
		s.remember(c)
		s.handoff(c)
		return c
	}
	s.remember(c)
	c.mu.Lock()
	c.armLocked() // joins the poller, armed for the request
	c.mu.Unlock()
	return c
}

// registryShard holds the server's connections whose fd number is i modulo
// registryShards, each at index fd/registryShards: the fd is the index, so
// a Conn keeps none, and the kernel's lowest-free fd numbers keep the
// slices dense. A map would cost several times the 8 bytes a connection.
// Since the fd number is the key, a connection is forgotten before its fd
// is closed (see Conn.release), and so before accept can reuse the number.
type registryShard struct {
	mu    sync.Mutex
	conns []*Conn // nil where no connection; the last is not nil
}

func (s *Server) shard(c *Conn) (r *registryShard, i int) {
	return &s.registry[uint32(c.fd)%registryShards], int(uint32(c.fd) / registryShards)
}

func (s *Server) remember(c *Conn) {
	r, i := s.shard(c)
	r.mu.Lock()
	if i >= len(r.conns) {
		r.conns = slices.Grow(r.conns, i+1-len(r.conns))[:i+1]
	}
	if r.conns[i] != nil {
		// Not reached: the fd was still open, or forgotten too late.
		s.log.Error("wsconn: fd registered twice", "fd", c.fd)
	}
	r.conns[i] = c
	r.mu.Unlock()
	s.connections.Add(1)
}

// forget removes c from the registry and from the per-address counts.
func (s *Server) forget(c *Conn) {
	if c.peerSlot != 0 {
		s.peers.remove(c.peerSlot)
	}
	r, i := s.shard(c)
	r.mu.Lock()
	r.conns[i] = nil
	n := len(r.conns)
	for n > 0 && r.conns[n-1] == nil {
		n--
	}
	r.conns = r.conns[:n]
	if cap(r.conns) > 64 && n < cap(r.conns)/4 {
		r.conns = slices.Clone(r.conns) // give back memory after a wave of closes
	}
	r.mu.Unlock()
	s.connections.Add(-1)
}

// each calls f for every registered connection, a shard at a time, without
// holding the shard lock while f runs.
func (s *Server) each(f func(c *Conn)) {
	s.eachWith(nil, f)
}

// eachWith is each with a batch buffer to reuse; it returns it for the
// next call, so that a sweep of many connections allocates nothing.
func (s *Server) eachWith(batch []*Conn, f func(c *Conn)) []*Conn {
	for i := range s.registry {
		r := &s.registry[i]
		r.mu.Lock()
		batch = append(batch[:0], r.conns...)
		r.mu.Unlock()
		for _, c := range batch {
			if c != nil {
				f(c)
			}
		}
	}
	clear(batch) // no references kept to released connections
	return batch[:0]
}

// sweepInterval is how often the sweep runs: a fifth of the shortest
// timeout, between 10 ms and 1 s. Coarse on purpose: the sweep replaces a
// timer per connection.
func (s *Server) sweepInterval() time.Duration {
	d := min(s.cfg.HandshakeTimeout, s.cfg.CloseTimeout)
	for _, t := range []time.Duration{s.cfg.PingInterval, s.cfg.IdleTimeout, s.cfg.FrameTimeout} {
		if t > 0 {
			d = min(d, t)
		}
	}
	return min(max(d/5, 10*time.Millisecond), time.Second)
}

// ticks returns the coarse clock: milliseconds since the server started,
// as of the last sweep. Turns stamp connections with it, so reading the
// clock costs an atomic load; uint32 differences survive its wrap-around.
func (s *Server) ticks() uint32 { return s.clock.Load() }

// tickAt returns the exact clock at t, in the unit of ticks.
func (s *Server) tickAt(t time.Time) uint32 { return uint32(t.Sub(s.started).Milliseconds()) }

// maxDeadline bounds the timeouts that deadlineAfter measures (about 12
// days): deadlines are compared as signed 32-bit differences of ticks, and
// one set near 2^31 ticks ahead would look passed to a sweep whose tick,
// read at the start of its pass, lags the clock by a millisecond.
const maxDeadline = math.MaxInt32 / 2 * time.Millisecond

// deadlineAfter returns the first tick by which d has passed since now, for
// Conn.deadline. Ticks are whole milliseconds, truncated, so it is the tick
// after now's plus d rounded up: a sweep never finds it passed before d
// has (one that did closed a handshake 0.1 ms early). It is never 0, which
// means no deadline.
func (s *Server) deadlineAfter(d time.Duration) uint32 {
	ms := uint32((min(d, maxDeadline) + time.Millisecond - 1) / time.Millisecond)
	return max(s.tickAt(s.now())+ms+1, 1)
}

// passed reports whether tick is at or after deadline, a value of
// deadlineAfter; it survives the clock's wrap-around.
func passed(tick, deadline uint32) bool { return int32(tick-deadline) >= 0 }

// later reports whether tick a is after tick b; it survives the clock's
// wrap-around.
func later(a, b uint32) bool { return int32(a-b) > 0 }

// sweep walks the connections on a coarse tick: it expires those past their
// handshake or close deadline, closes those past their frame deadline,
// pings the quiet ones and closes the idle ones. It reads the clock once per
// pass, not once per connection.
func (s *Server) sweep() {
	defer close(s.done)
	interval := s.sweepInterval()
	t := time.NewTicker(interval)
	defer t.Stop()
	ms := func(d time.Duration) uint32 { return uint32(d.Milliseconds()) }
	ping, idle := ms(s.cfg.PingInterval), ms(s.cfg.IdleTimeout)
	// Input is stamped with the tick of the last sweep, up to an interval
	// before it came: silence is counted from an interval later, so that
	// no connection is pinged or closed before its silence has lasted
	// (closes came up to 150 ms early at --idle-timeout 3s).
	step := ms(interval)
	var batch []*Conn
	for {
		select {
		case <-s.stopSweep:
			s.flushRefusals(s.now().Add(time.Second)) // all that is held back
			return
		case <-t.C:
		}
		wall := s.now()
		tick := s.tickAt(wall)
		s.clock.Store(tick)
		s.flushRefusals(wall)
		batch = s.eachWith(batch, func(c *Conn) {
			var close ws.StatusCode
			var reason string
			var expirer Expirer
			c.mu.Lock()
			late := c.deadline != 0 && passed(tick, c.deadline) && c.state != stateClosed
			if c.q != nil && c.q.idle() {
				// An idle connection keeps no queue; one that is busy
				// keeps it, so that fan-out allocates nothing per delivery.
				if c.q.quiet {
					c.q = nil
				} else {
					c.q.quiet = true
				}
			}
			if c.state == stateOpen {
				quiet := tick - c.lastSeen
				switch {
				case late:
					// An open connection's deadline is its frame deadline.
					late = false
					close, reason = ws.StatusPolicyViolation, "frame timeout"
				case idle > 0 && quiet >= idle+step:
					close, reason = ws.StatusGoingAway, "idle timeout"
				case ping > 0 && quiet >= ping+step && !c.is(flagPinged):
					c.set(flagPinged, true)
					s.pings.Add(1)
					c.enqueueLocked(sweepPing)
				}
				if close == 0 {
					expirer, _ = c.handler.(Expirer)
				}
			}
			c.mu.Unlock()
			if expirer != nil {
				if code, why, ok := expirer.Expired(c, wall); ok {
					c.Close(code, why)
				}
			}
			switch {
			case late:
				c.expire()
			case close != 0:
				s.idleCloses.Add(1)
				c.Close(close, reason)
			}
		})
	}
}

// sweepPing is the sweep's ping: a shared frame with an empty payload.
var sweepPing = NewFrame(ws.OpPing, nil)

// Connections returns the number of connections held, upgraded or not.
func (s *Server) Connections() int { return int(s.connections.Load()) }

// Stats are a Server's gauges (the connections held now) and its counters
// since it started.
type Stats struct {
	Connections int64 `json:"connections"`          // every connection held: WebSocket, handshaking or plain HTTP
	WebSockets  int64 `json:"websockets"`           // upgraded connections not yet released
	Handshakes  int64 `json:"handshakes_in_flight"` // accepted, not yet upgraded nor answered; kept-alive HTTP connections between requests included

	Accepted        uint64 `json:"accepted"`         // connections accepted, refused ones included
	Upgrades        uint64 `json:"upgrades"`         // WebSocket upgrades that succeeded
	HandshakeErrors uint64 `json:"handshake_errors"` // upgrade requests answered with an error status
	// HandshakeAborts counts the connections released before their request
	// was complete: the peer left, or HandshakeTimeout passed (slowloris).
	HandshakeAborts uint64 `json:"handshake_aborts"`
	// Refused counts the connections answered with 503 and closed at
	// accept, for any reason: over MaxHandshakes, MaxConnections or
	// MaxConnectionsPerIP, or while the server shuts down.
	Refused            uint64 `json:"refused"`
	RefusedConnections uint64 `json:"refused_connections"` // of Refused, over MaxConnections
	RefusedPerIP       uint64 `json:"refused_per_ip"`      // of Refused, over MaxConnectionsPerIP
	HTTPRequests       uint64 `json:"http_requests"`       // plain HTTP requests served
	HTTPHandlers       int64  `json:"http_handlers"`       // HTTP handlers running now
	HTTPBusy           uint64 `json:"http_busy"`           // HTTP requests answered 503 over MaxHTTPHandlers
	HTTPReused         uint64 `json:"http_reused"`         // of HTTPRequests, those on a kept-alive connection (its second and later)
	ProtocolErrors     uint64 `json:"protocol_errors"`     // connections failed for breaking RFC 6455 or a limit
	MessagesIn         uint64 `json:"messages_in"`         // data messages received
	// CompressedUpgrades counts the upgrades that negotiated
	// permessage-deflate; MessagesInflated, the compressed client
	// messages inflated (of MessagesIn).
	CompressedUpgrades uint64 `json:"compressed_upgrades"`
	MessagesInflated   uint64 `json:"messages_inflated"`
	BytesIn            uint64 `json:"bytes_in"`
	BytesOut           uint64 `json:"bytes_out"`
	Pings              uint64 `json:"pings"` // pings sent by the sweep
	// IdleCloses counts the connections the sweep closed: idle past
	// IdleTimeout (1001), or a frame not complete within FrameTimeout (1008).
	IdleCloses uint64 `json:"idle_closes"`
	// Turns counts the turns workers ran, each a connection's read or
	// write readiness served: a connection that spins shows here.
	Turns uint64 `json:"turns"`
	// Writes counts write and writev system calls; with BytesOut, how
	// well output is gathered.
	Writes uint64 `json:"writes"`
	// Resets counts the connections released at a deadline (handshake or
	// close timeout) with output the peer never read: they are closed with
	// a TCP reset, so that the kernel frees their buffers at once.
	Resets uint64 `json:"resets"`
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Connections:        s.connections.Load(),
		WebSockets:         s.websockets.Load(),
		Handshakes:         s.handshakes.Load(),
		Accepted:           s.accepted.Load(),
		Upgrades:           s.upgrades.Load(),
		HandshakeErrors:    s.handshakeErrors.Load(),
		HandshakeAborts:    s.handshakeAborts.Load(),
		Refused:            s.refused.Load(),
		RefusedConnections: s.refusedConns.Load(),
		RefusedPerIP:       s.refusedPerIP.Load(),
		HTTPRequests:       s.httpRequests.Load(),
		HTTPHandlers:       s.httpHandlers.Load(),
		HTTPBusy:           s.httpBusy.Load(),
		HTTPReused:         s.httpReused.Load(),
		ProtocolErrors:     s.protocolErrors.Load(),
		MessagesIn:         s.messagesIn.Load(),
		CompressedUpgrades: s.compressedUpgrades.Load(),
		MessagesInflated:   s.messagesInflated.Load(),
		BytesIn:            s.bytesIn.Load(),
		BytesOut:           s.bytesOut.Load(),
		Pings:              s.pings.Load(),
		IdleCloses:         s.idleCloses.Load(),
		Resets:             s.resets.Load(),
		Turns:              s.turns.Load(),
		Writes:             s.writeCalls.Load(),
	}
}

// Shutdown stops accepting, queues close 1001 to every open connection
// behind what it is owed, and waits until all connections are released or
// ctx is done; then it releases what is left and stops the server. It
// returns ctx's error if ctx ended first.
//
// A connection may take until ctx's deadline to drain its queue (not just
// Config.CloseTimeout, which bounds an ordinary Close): a client owed a
// backlog gets all of it if it reads it in time. Once its close frame is
// written, a client has Config.CloseTimeout to close its side.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	var deadline uint32 // none: ctx's end releases what is left
	if dl, ok := ctx.Deadline(); ok {
		deadline = s.deadlineAfter(max(time.Until(dl), 0))
	}
	s.each(func(c *Conn) { c.closeBy(ws.StatusGoingAway, "server shutting down", deadline) })
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	var err error
wait:
	for s.connections.Load() > 0 {
		select {
		case <-ctx.Done():
			err = ctx.Err()
			break wait
		case <-t.C:
		}
	}
	s.stop()
	return err
}

// Close stops accepting and releases every connection at once, without the
// closing handshake.
func (s *Server) Close() error {
	s.stopAccepting()
	s.stop()
	return nil
}

// stopAccepting makes every Serve return and waits for them.
func (s *Server) stopAccepting() {
	s.mu.Lock()
	if !s.closing.Swap(true) {
		close(s.stopAccept)
	}
	s.mu.Unlock()
	s.serving.Wait()
}

// stop releases the remaining connections and stops the pool, the poller
// and the sweep.
func (s *Server) stop() {
	s.closeOnce.Do(func() {
		// Expired connections are released by their next turn.
		for s.connections.Load() > 0 {
			s.each(func(c *Conn) { c.expire() })
			time.Sleep(time.Millisecond)
		}
		close(s.stopSweep)
		<-s.done
		// The poller and the handoffs first: nothing may submit to a
		// closed pool.
		_ = s.poller.Close()
		s.stopHandoffs()
		s.pool.Close()
	})
}

// QueuedBytes returns the bytes queued on all connections and not yet
// written. It walks every connection: for stats, not for hot paths.
func (s *Server) QueuedBytes() int64 {
	var n int64
	for i := range s.registry {
		r := &s.registry[i]
		// Under the shard lock, with no copy: QueuedBytes only takes each
		// connection's lock briefly and never blocks.
		r.mu.Lock()
		for _, c := range r.conns {
			if c != nil {
				n += int64(c.QueuedBytes())
			}
		}
		r.mu.Unlock()
	}
	return n
}

// ListenControl returns a Control function for net.ListenConfig that gives
// the listening socket, before it listens, the options of cfg that Serve
// sets on it (SendBufferBytes): with it, no connection completes without
// them, as those that arrive between listen(2) and Serve would.
func ListenControl(cfg Config) func(network, address string, c syscall.RawConn) error {
	return func(_, _ string, c syscall.RawConn) error {
		var serr error
		if err := c.Control(func(fd uintptr) { serr = setSendBuffer(int(fd), cfg.SendBufferBytes) }); err != nil {
			return err
		}
		return serr
	}
}

// setSendBuffer sets the send buffer (SO_SNDBUF) of the listening socket fd,
// which its connections take, to n bytes; n <= 0 leaves the system's. Linux
// caps what is asked for at its maximum; the BSDs refuse more than theirs
// with ENOBUFS (NetBSD's default is about 209 KB), and then n is halved
// until they take it.
func setSendBuffer(fd, n int) error {
	if n <= 0 {
		return nil
	}
	for try := n; ; try /= 2 {
		err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, try)
		if err == nil {
			return nil
		}
		if err != unix.ENOBUFS || try < 8<<10 {
			return fmt.Errorf("send buffer of %d bytes: %w", try, err)
		}
	}
}
