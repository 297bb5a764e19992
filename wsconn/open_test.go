package wsconn

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// openingHandler is an Echo whose OnOpen is open.
type openingHandler struct {
	Echo
	open func(c *Conn)
}

func (h openingHandler) OnOpen(c *Conn) { h.open(c) }

// serveOpening serves a Handler whose OnOpen is open, and returns the
// server and its address.
func serveOpening(t *testing.T, open func(c *Conn)) (*Server, string) {
	t.Helper()
	return serveHandler(t, openingHandler{open: open})
}

// serveHandler serves h on every path, and returns the server and its
// address.
func serveHandler(t *testing.T, h Handler) (*Server, string) {
	t.Helper()
	return serveConfig(t, Config{Upgrade: func(*Request) (Handler, error) { return h, nil }})
}

// serveConfig serves cfg on 127.0.0.1, and shuts the server down when the
// test ends.
func serveConfig(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	s, err := NewServer(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveOn(t, s, ln)
	return s, ln.Addr().String()
}

// serveOn serves ln with s until the test ends, then shuts s down.
func serveOn(t *testing.T, s *Server, ln net.Listener) {
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
}

// dialOpening upgrades a connection to addr and returns what follows the
// 101 to read.
func dialOpening(t *testing.T, addr string) (net.Conn, *bufio.Reader) {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	_, err = io.WriteString(nc, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	return nc, br
}

// readTexts reads n frames and returns their opcodes and payloads as
// strings, a close frame as "close".
func readTexts(t *testing.T, br *bufio.Reader, n int) []string {
	t.Helper()
	var got []string
	for range n {
		h, p, err := readServerFrame(br)
		require.NoError(t, err)
		if h.OpCode == ws.OpClose {
			got = append(got, "close")
			continue
		}
		got = append(got, string(p))
	}
	return got
}

// TestSendOnOpen: what OnOpen sends with SendOnOpen goes out in the upgrade
// response's write, in order, ahead of what it (or anyone) sent otherwise
// meanwhile; outside OnOpen SendOnOpen refuses.
func TestSendOnOpen(t *testing.T) {
	opened := make(chan *Conn, 1)
	srv, addr := serveOpening(t, func(c *Conn) {
		assert.NoError(t, c.Send(NewFrame(ws.OpText, []byte("sent")), 0))
		for _, p := range []string{"one", "two", "three"} {
			frame := NewFrame(ws.OpText, []byte(p))
			assert.NoError(t, c.SendOnOpen(frame))
			copy(frame[2:], "XXX") // copied: the caller's to reuse
		}
		opened <- c
	})
	before := srv.Stats().Writes
	_, br := dialOpening(t, addr)
	assert.Equal(t, []string{"one", "two", "three", "sent"}, readTexts(t, br, 4))
	c := <-opened
	// The 101 and its three frames go ahead of the queued frame, and the
	// turn's end writes them all in one writev.
	assert.Equal(t, uint64(1), srv.Stats().Writes-before, "writes")
	assert.ErrorIs(t, c.SendOnOpen(NewFrame(ws.OpText, []byte("late"))), ErrNotOpening)
}

// TestSendOnOpenAlone: a handler that sends only with SendOnOpen costs a
// connection one write for its response and its frames.
func TestSendOnOpenAlone(t *testing.T) {
	srv, addr := serveOpening(t, func(c *Conn) {
		assert.NoError(t, c.SendOnOpen(NewFrame(ws.OpText, []byte("hello"))))
		assert.NoError(t, c.SendOnOpen(NewFrame(ws.OpText, []byte("again"))))
	})
	before := srv.Stats().Writes
	_, br := dialOpening(t, addr)
	assert.Equal(t, []string{"hello", "again"}, readTexts(t, br, 2))
	assert.Equal(t, uint64(1), srv.Stats().Writes-before, "writes")
}

// TestSendOnOpenThenClose: a close from OnOpen follows the response and
// the frames sent before it; after it SendOnOpen refuses.
func TestSendOnOpenThenClose(t *testing.T) {
	_, addr := serveOpening(t, func(c *Conn) {
		assert.NoError(t, c.SendOnOpen(NewFrame(ws.OpText, []byte("reason"))))
		c.Close(ws.StatusPolicyViolation, "go away")
		assert.ErrorIs(t, c.SendOnOpen(NewFrame(ws.OpText, []byte("after"))), ErrClosed)
	})
	_, br := dialOpening(t, addr)
	assert.Equal(t, []string{"reason", "close"}, readTexts(t, br, 2))
}

// TestWriteQueuePushFront: the response goes ahead of frames queued
// while OnOpen ran, whether the queue's head moved or not, and a pending
// pong keeps its place.
func TestWriteQueuePushFront(t *testing.T) {
	q := newWriteQueue()
	q.push([]byte("a"))
	q.pushPong([]byte("p"))
	q.pushFront([]byte("0"))
	require.Equal(t, []byte("p"), q.pendingPong())
	var iov [8][]byte
	assert.Equal(t, [][]byte{[]byte("0"), []byte("a"), []byte("p")}, q.iovecs(iov[:]))

	q = newWriteQueue()
	q.push([]byte("x"))
	q.push([]byte("b"))
	q.consume(1) // head moves past x
	q.pushFront([]byte("0"))
	assert.Equal(t, [][]byte{[]byte("0"), []byte("b")}, q.iovecs(iov[:]))
}

// lingeringSender sends with SendOnOpen from a goroutine of its own, as a
// handler's late publish does, until its connection's OnClose is done.
type lingeringSender struct {
	Echo
	closed chan struct{}
	errs   chan error
}

func (h lingeringSender) OnOpen(*Conn) {}

func (h lingeringSender) OnMessage(c *Conn, _ ws.OpCode, _ []byte) {
	go func() {
		var last error
		for {
			select {
			case <-h.closed:
				h.errs <- last
				return
			default:
			}
			last = c.SendOnOpen(NewFrame(ws.OpText, []byte("late")))
			if last != ErrNotOpening && last != ErrClosed {
				h.errs <- last
				return
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
}

func (h lingeringSender) OnClose(*Conn) {
	time.Sleep(50 * time.Millisecond) // a handler's OnClose takes its time
	close(h.closed)
}

// TestSendOnOpenAfterRelease: SendOnOpen from another goroutine while the
// connection is released refuses, and (under -race) reads nothing the
// release writes without the lock.
func TestSendOnOpenAfterRelease(t *testing.T) {
	h := lingeringSender{closed: make(chan struct{}), errs: make(chan error, 1)}
	_, addr := serveHandler(t, h)
	nc, _ := dialOpening(t, addr)
	_, err := nc.Write(clientFrame(true, ws.OpText, []byte("go")))
	require.NoError(t, err)
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, nc.Close())
	select {
	case err := <-h.errs:
		assert.ErrorIs(t, err, ErrClosed)
	case <-time.After(10 * time.Second):
		t.Fatal("OnClose never ran")
	}
}

// TestUpgradeRequest: OnOpen sees the request of the upgrade, and no one
// does once OnOpen has returned (the upgrader's Request is reused).
func TestUpgradeRequest(t *testing.T) {
	type seen struct {
		c   *Conn
		req Request
		ok  bool
	}
	opened := make(chan seen, 1)
	_, addr := serveOpening(t, func(c *Conn) {
		r := c.UpgradeRequest()
		s := seen{c: c, ok: r != nil}
		if r != nil {
			s.req = *r
		}
		opened <- s
	})
	dialOpening(t, addr) // the 101 is written once OnOpen returns
	s := <-opened
	require.True(t, s.ok, "UpgradeRequest in OnOpen")
	assert.Equal(t, "/ws", s.req.Path)
	assert.Equal(t, "x", s.req.Host)
	assert.True(t, s.req.RemoteAddr.IsValid())
	assert.Nil(t, s.c.UpgradeRequest(), "after OnOpen")
}
