package client_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/client"
	"github.com/fanout/fanout/wsconn"
)

// waitTimeout bounds every wait: a deadline for a hang, never a latency
// assertion.
const waitTimeout = 15 * time.Second

// server is fanout in-process, wired as "fanout serve" wires it, on a
// loopback address it keeps across restarts.
type server struct {
	addr string
	hcfg broadcast.Config
	scfg wsconn.Config
	hub  *broadcast.Hub
	srv  *wsconn.Server
	done chan error
}

func startServer(t testing.TB, hcfg broadcast.Config, scfg wsconn.Config) *server {
	t.Helper()
	s := &server{addr: "127.0.0.1:0", hcfg: hcfg, scfg: scfg}
	s.start(t)
	t.Cleanup(func() { s.stop(t) })
	return s
}

// start serves on s.addr, the same address after a restart.
func (s *server) start(t testing.TB) {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	hcfg, scfg := s.hcfg, s.scfg
	hcfg.Logger, scfg.Logger = quiet, quiet
	s.hub = broadcast.New(hcfg)
	mux := http.NewServeMux()
	mux.Handle("/publish", s.hub.PublishHandler())
	hub := s.hub
	scfg.Upgrade = func(r *wsconn.Request) (wsconn.Handler, error) {
		if r.Path == "/ws" {
			return hub.Upgrade(r)
		}
		return nil, wsconn.Reject(http.StatusNotFound, "not found")
	}
	scfg.HTTP = mux
	srv, err := wsconn.NewServer(scfg)
	require.NoError(t, err)
	var ln net.Listener
	deadline := time.Now().Add(waitTimeout)
	for {
		// The port of the previous run may take a moment to be free.
		if ln, err = net.Listen("tcp", s.addr); err == nil {
			break
		}
		require.True(t, time.Now().Before(deadline), "listen %s: %v", s.addr, err)
		time.Sleep(20 * time.Millisecond)
	}
	s.addr = ln.Addr().String()
	s.srv, s.done = srv, make(chan error, 1)
	go func() { s.done <- srv.Serve(ln) }()
}

// stop closes the hub and shuts the server down, as SIGTERM does. Its
// history goes with it.
func (s *server) stop(t testing.TB) {
	t.Helper()
	if s.srv == nil {
		return
	}
	s.hub.Close()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_ = s.srv.Shutdown(ctx)
	<-s.done
	s.srv = nil
}

func (s *server) url() string { return "ws://" + s.addr }

// proxy forwards TCP connections to a server, and cuts them all on demand:
// a network failure that the server survives, with its history.
type proxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	conns  []net.Conn
	half   atomic.Bool // cut the next server-to-client read in half, then close
}

func startProxy(t testing.TB, target string) *proxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, target: target}
	go p.serve()
	t.Cleanup(func() {
		_ = ln.Close()
		p.cut()
	})
	return p
}

func (p *proxy) serve() {
	for {
		down, err := p.ln.Accept()
		if err != nil {
			return
		}
		up, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = down.Close()
			continue
		}
		p.mu.Lock()
		p.conns = append(p.conns, down, up)
		p.mu.Unlock()
		go func() { _, _ = io.Copy(up, down); _ = up.Close() }()
		go func() {
			defer down.Close()
			buf := make([]byte, 32<<10)
			for {
				n, err := up.Read(buf)
				if n > 0 {
					if n > 1 && p.half.CompareAndSwap(true, false) {
						// Half a read, likely half a frame, then the end.
						_, _ = down.Write(buf[:n/2])
						_ = up.Close()
						return
					}
					if _, werr := down.Write(buf[:n]); werr != nil {
						_ = up.Close()
						return
					}
				}
				if err != nil {
					return
				}
			}
		}()
	}
}

// reset closes every connection through the proxy with a TCP reset to the
// client.
func (p *proxy) reset() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
	}
	p.conns = nil
}

// fin half-closes every connection towards the client: it reads EOF
// mid-stream, with no close frame.
func (p *proxy) fin() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, c := range p.conns {
		if tc, ok := c.(*net.TCPConn); ok && i%2 == 0 { // the client's side
			_ = tc.CloseWrite()
		}
	}
}

// cut closes every connection through the proxy, both ends.
func (p *proxy) cut() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

func (p *proxy) url() string { return "ws://" + p.ln.Addr().String() }

// recorder collects what a client delivers: messages per topic and
// events, in order.
type recorder struct {
	mu     sync.Mutex
	msgs   map[string][]client.Message
	events []client.Event
	notify chan struct{}
}

func newRecorder() *recorder {
	return &recorder{msgs: make(map[string][]client.Message), notify: make(chan struct{}, 1)}
}

func (r *recorder) poke() {
	select {
	case r.notify <- struct{}{}:
	default:
	}
}

func (r *recorder) handler(m client.Message) {
	r.mu.Lock()
	r.msgs[m.Topic] = append(r.msgs[m.Topic], m)
	r.mu.Unlock()
	r.poke()
}

func (r *recorder) event(e client.Event) {
	r.mu.Lock()
	r.events = append(r.events, e)
	r.mu.Unlock()
	r.poke()
}

// waitFor waits until cond, called under the recorder's lock, holds.
func (r *recorder) waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(waitTimeout)
	for {
		r.mu.Lock()
		ok := cond()
		r.mu.Unlock()
		if ok {
			return
		}
		select {
		case <-r.notify:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			r.mu.Lock()
			defer r.mu.Unlock()
			t.Fatalf("waiting for %s; events %v", what, r.events)
		}
	}
}

// count returns the events of kind for topic ("" for any), under r.mu.
func (r *recorder) countLocked(kind client.EventKind, topic string) int {
	n := 0
	for _, e := range r.events {
		if e.Kind == kind && (topic == "" || e.Topic == topic) {
			n++
		}
	}
	return n
}

// seqs returns the seqs delivered for topic, under r.mu.
func (r *recorder) seqsLocked(topic string) []uint64 {
	var out []uint64
	for _, m := range r.msgs[topic] {
		out = append(out, m.Seq)
	}
	return out
}
