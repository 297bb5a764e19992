package wsconn_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	gorilla "github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/wsconn"
)

// The fault tests play clients that fail or attack at every layer: TCP
// (resets, peers that vanish), HTTP (slow and huge requests) and WebSocket
// (slow, huge and garbage frames), and clients over the connection limits.
// Each checks that the server releases what the client held, back to the
// process's fds, and that a well-behaved client is served meanwhile. They
// are not parallel at the top level, so that the process's sockets can be
// counted.

// heldSockets returns the number of sockets the process holds, or -1 where
// it cannot tell (no /proc).
func heldSockets(t testing.TB) int {
	t.Helper()
	if runtime.GOOS != "linux" {
		return -1
	}
	links, err := socketLinks()
	require.NoError(t, err)
	return len(links)
}

// requireReleased waits until srv holds no connection and the process holds
// sockets sockets (see heldSockets), and returns how long that took.
func requireReleased(t testing.TB, srv *wsconn.Server, sockets int) time.Duration {
	t.Helper()
	start := time.Now()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		st := srv.Stats()
		assert.Zero(c, st.Connections, "connections held")
		assert.Zero(c, st.WebSockets, "WebSockets held")
		assert.Zero(c, st.Handshakes, "handshakes in flight")
		if sockets >= 0 {
			links, err := socketLinks()
			if assert.NoError(c, err) {
				assert.Equal(c, sockets, len(links), "sockets held by the process")
			}
		}
	}, rawTimeout, 5*time.Millisecond, "the server must release the connections")
	return time.Since(start)
}

// requireConnections waits until srv holds n connections.
func requireConnections(t testing.TB, srv *wsconn.Server, n int) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.Equal(c, n, srv.Connections(), "connections held")
	}, rawTimeout, time.Millisecond)
}

// requireBytesIn waits until srv has read n bytes in all, so that what a
// client wrote is known to be in the server's hands.
func requireBytesIn(t testing.TB, srv *wsconn.Server, n uint64) {
	t.Helper()
	require.EventuallyWithT(t, func(c *assert.CollectT) {
		assert.GreaterOrEqual(c, srv.Stats().BytesIn, n, "bytes read by the server")
	}, rawTimeout, time.Millisecond)
}

// dialGorilla dials addr's /echo with gorilla/websocket from localIP (any
// address when empty).
func dialGorilla(addr, localIP string) (*gorilla.Conn, *http.Response, error) {
	nd := &net.Dialer{Timeout: rawTimeout}
	if localIP != "" {
		nd.LocalAddr = &net.TCPAddr{IP: net.ParseIP(localIP)}
	}
	d := gorilla.Dialer{NetDialContext: nd.DialContext, HandshakeTimeout: rawTimeout}
	return d.Dial("ws://"+addr+"/echo", nil)
}

// requireEcho sends msg on c and requires it back.
func requireEcho(t testing.TB, c *gorilla.Conn, msg string) {
	t.Helper()
	require.NoError(t, c.SetWriteDeadline(time.Now().Add(rawTimeout)))
	require.NoError(t, c.SetReadDeadline(time.Now().Add(rawTimeout)))
	require.NoError(t, c.WriteMessage(gorilla.TextMessage, []byte(msg)))
	typ, got, err := c.ReadMessage()
	require.NoError(t, err)
	assert.Equal(t, gorilla.TextMessage, typ)
	assert.Equal(t, msg, string(got))
}

// closeGorilla runs the closing handshake on c and closes it.
func closeGorilla(t testing.TB, c *gorilla.Conn) {
	t.Helper()
	defer c.Close()
	require.NoError(t, c.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(1000, ""), time.Now().Add(rawTimeout)))
	_, _, err := c.ReadMessage()
	require.True(t, gorilla.IsCloseError(err, 1000), "want the server's close 1000, got %v", err)
}

// requireServed checks that a well-behaved client is served: a gorilla
// client gets its message echoed and closes cleanly.
func requireServed(t testing.TB, addr string) {
	t.Helper()
	c, _, err := dialGorilla(addr, "")
	require.NoError(t, err, "a well-behaved client must be served")
	requireEcho(t, c, "well-behaved")
	closeGorilla(t, c)
}

// resetConn closes conn with a TCP reset instead of a FIN.
func resetConn(t testing.TB, conn net.Conn) {
	t.Helper()
	require.NoError(t, conn.(*net.TCPConn).SetLinger(0))
	require.NoError(t, conn.Close())
}

// requireClosedByServer reads from conn until the server closes it: EOF,
// or a reset when the server closed with input of ours unread. A timeout
// fails.
func requireClosedByServer(t testing.TB, conn net.Conn) {
	t.Helper()
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(rawTimeout)))
	_, err := io.Copy(io.Discard, conn)
	if err == nil || errors.Is(err, syscall.ECONNRESET) {
		return // io.Copy reports EOF as nil
	}
	require.NoError(t, err, "want the server to close the connection")
}

// TestFaultResetMidFrame kills clients with a TCP reset at every point of a
// connection's life. The server has no timeout that could release them
// (no idle or frame timeout, a minute for the handshake): only handling
// the reset can.
func TestFaultResetMidFrame(t *testing.T) {
	srv, addr := startServer(t, wsconn.Config{HandshakeTimeout: time.Minute})
	payload := bytes.Repeat([]byte("p"), 200)
	for _, tc := range []struct {
		name    string
		upgrade bool   // upgrade before writing sent
		sent    []byte // written, and read by the server, before the reset
	}{
		{name: "in the upgrade request", sent: []byte(upgradeRequest("/echo", newSecKey())[:40])},
		{name: "in a frame header", upgrade: true, sent: frame(true, opBinary, payload)[:3]},
		{name: "in a frame payload", upgrade: true, sent: frame(true, opBinary, payload)[:6+50]},
		{name: "in a fragmented message", upgrade: true, sent: slices.Concat(
			frame(false, opText, []byte("frag")), frame(true, opPing, nil), frame(true, opCont, payload)[:20])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sockets := heldSockets(t)
			base := srv.Stats().BytesIn
			var conn *net.TCPConn
			if tc.upgrade {
				c := dialWS(t, addr)
				conn = c.conn
				base = srv.Stats().BytesIn
			} else {
				conn = dialRaw(t, addr)
			}
			_, err := conn.Write(tc.sent)
			require.NoError(t, err)
			requireBytesIn(t, srv, base+uint64(len(tc.sent)))
			requireConnections(t, srv, 1)
			requireServed(t, addr)

			resetConn(t, conn)
			took := requireReleased(t, srv, sockets)
			t.Logf("released %v after the reset", took)
		})
	}

	t.Run("with output queued", func(t *testing.T) {
		// The client sends and never reads: the server's echoes fill the
		// socket and its queue, and it stops reading. Then the reset.
		sockets := heldSockets(t)
		c := dialWS(t, addr)
		msg := frame(true, opBinary, bytes.Repeat([]byte("q"), 64<<10))
		require.NoError(t, c.conn.SetWriteDeadline(time.Now().Add(rawTimeout)))
		writer := make(chan error, 1)
		go func() {
			for {
				if _, err := c.conn.Write(msg); err != nil {
					writer <- err
					return
				}
			}
		}()
		require.Eventually(t, func() bool { return srv.QueuedBytes() > 0 }, rawTimeout, time.Millisecond,
			"the server must have output queued")
		requireServed(t, addr)
		resetConn(t, c.conn)
		require.Error(t, <-writer)
		took := requireReleased(t, srv, sockets)
		t.Logf("released %v after the reset", took)
		assert.Zero(t, srv.QueuedBytes())
	})
}

// TestFaultHalfOpenPeer: a client completes the handshake and then goes
// silent, never sending a FIN, a pong or a close frame, like a peer whose
// host vanished. The sweep pings it, closes it as idle, and releases it
// when the close timeout passes without the peer's FIN.
func TestFaultHalfOpenPeer(t *testing.T) {
	const idle, closeTimeout = 300 * time.Millisecond, 300 * time.Millisecond
	srv, addr := startServer(t, wsconn.Config{
		PingInterval: 100 * time.Millisecond,
		IdleTimeout:  idle,
		CloseTimeout: closeTimeout,
	})
	sockets := heldSockets(t)
	c := dialWS(t, addr)
	start := time.Now()
	requireServed(t, addr)

	// Released while the client still holds its socket: one socket more
	// than before, the client's.
	clientSocket := sockets
	if sockets >= 0 {
		clientSocket++
	}
	took := requireReleased(t, srv, clientSocket)
	elapsed := time.Since(start)
	t.Logf("released %v after the upgrade (idle %v, then close %v)", elapsed, idle, closeTimeout)
	// The idle clock is coarse: it may start up to a sweep interval (20 ms
	// here) before the upgrade.
	assert.GreaterOrEqual(t, elapsed, idle+closeTimeout-50*time.Millisecond, "released before its idle and close timeouts (waited %v)", took)
	st := srv.Stats()
	assert.GreaterOrEqual(t, st.Pings, uint64(1), "pinged first")
	assert.Equal(t, uint64(1), st.IdleCloses)

	// What the silent client would have read: pings, then the close.
	got, code := c.readUntilClose(t)
	for _, f := range got {
		assert.Equal(t, opPing, f.Op, "only pings before the close: %v", got)
	}
	assert.Equal(t, 1001, code)
	c.requireEOF(t)
	require.NoError(t, c.conn.Close())
	requireReleased(t, srv, sockets)
}

// TestFaultUnreadOutputReset: a peer that stops reading with output owed
// to it (here, the echo of a large message) is closed at its idle timeout;
// the close frame cannot reach it, and at the close timeout the server
// resets the connection, so that the kernel frees the socket's buffers at
// once instead of keeping an orphan that sends to no one.
func TestFaultUnreadOutputReset(t *testing.T) {
	srv, addr := startServer(t, wsconn.Config{
		MaxQueueBytes: 64 << 10,
		IdleTimeout:   300 * time.Millisecond,
		CloseTimeout:  300 * time.Millisecond,
	})
	sockets := heldSockets(t)
	c := dialWS(t, addr)
	require.NoError(t, c.conn.SetReadBuffer(4096))
	// 4 MiB of echo: far more than both sockets' buffers take.
	for range 4 {
		require.NoError(t, c.writeFrames([][]byte{maskedFrame(ws.OpBinary, make([]byte, 1<<20))}, false))
	}
	requireServed(t, addr)
	clientSocket := sockets
	if sockets >= 0 {
		clientSocket++ // the client still holds its socket
	}
	requireReleased(t, srv, clientSocket)
	assert.Equal(t, uint64(1), srv.Stats().Resets, "released with a reset")
	assert.Equal(t, uint64(1), srv.Stats().IdleCloses)

	// What the client reads ends in the reset, not in a clean close.
	require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(rawTimeout)))
	_, err := io.Copy(io.Discard, c.conn)
	assert.ErrorIs(t, err, syscall.ECONNRESET)
}

// TestFaultSlowlorisHandshake trickles requests, a byte every 50 ms, and
// never finishes them. Each byte comes well within HandshakeTimeout, so
// only an absolute deadline stops them.
func TestFaultSlowlorisHandshake(t *testing.T) {
	const handshakeTimeout = 500 * time.Millisecond
	srv, addr := startServer(t, wsconn.Config{HandshakeTimeout: handshakeTimeout})
	sockets := heldSockets(t)
	long := strings.Repeat("a", 4000) // 200 s of bytes at the trickle's rate
	cases := []struct{ name, request string }{
		{"request line", "GET /echo?" + long},
		{"header", "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nX-Slow: " + long},
		{"plain HTTP body", "POST /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 100000\r\n\r\n" + long},
	}
	// All at once, and a well-behaved client beside them.
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	conns := make([]net.Conn, len(cases))
	start := time.Now()
	for i, tc := range cases {
		conns[i] = dialRaw(t, addr)
		wg.Go(func() { writeEvery(conns[i], chunks([]byte(tc.request), 1), 50*time.Millisecond, done) })
	}
	requireServed(t, addr)
	held := srv.Stats().Handshakes
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			requireClosedByServer(t, conns[i])
			elapsed := time.Since(start)
			t.Logf("closed after at most %v", elapsed)
			assert.GreaterOrEqual(t, elapsed, handshakeTimeout, "closed before HandshakeTimeout")
		})
	}
	t.Logf("the well-behaved client was served while %d slow requests were held", held)
	for _, conn := range conns {
		require.NoError(t, conn.Close())
	}
	requireReleased(t, srv, sockets)
	assert.Equal(t, uint64(1), srv.Stats().Upgrades, "only the well-behaved client upgraded")
	assert.Equal(t, uint64(len(cases)), srv.Stats().HandshakeAborts, "the slow requests count as aborted handshakes")
}

// TestFaultSlowlorisFrame trickles frames into upgraded connections, each
// byte or fragment well within FrameTimeout: a frame or fragmented message
// must still be complete within FrameTimeout of its first byte, or the
// connection is closed with 1008. A client that streams whole messages
// slowly, its reads never ending between two messages, is not closed.
func TestFaultSlowlorisFrame(t *testing.T) {
	const frameTimeout = 500 * time.Millisecond
	const interval = 50 * time.Millisecond
	srv, addr := startServer(t, wsconn.Config{FrameTimeout: frameTimeout})
	sockets := heldSockets(t)

	var fragments [][]byte // a fragmented message that never ends, with pings between fragments
	fragments = append(fragments, frame(false, opBinary, []byte{0}))
	for i := range 200 {
		if i%4 == 3 {
			fragments = append(fragments, frame(true, opPing, nil))
		}
		fragments = append(fragments, frame(false, opCont, []byte{byte(i)}))
	}
	cases := []struct {
		name   string
		chunks [][]byte // written one every interval
	}{
		{"payload a byte at a time", chunks(frame(true, opBinary, make([]byte, 1000)), 1)},
		{"header a byte at a time", chunks(rawFrame(bitFIN|opBinary, true, 70000, nil), 1)},
		{"fragments", fragments},
	}

	// Every write ends inside a message: the second half of one and the
	// first half of the next. Each message is complete within an interval;
	// the stream lasts three FrameTimeouts.
	const n = 3 * int(frameTimeout/interval)
	var want []serverFrame
	var halves [][]byte
	var prev []byte
	for i := range n {
		msg := fmt.Sprintf("message %02d", i)
		want = append(want, echoText(msg))
		f := frame(true, opText, []byte(msg))
		halves = append(halves, slices.Concat(prev, f[:len(f)/2]))
		prev = f[len(f)/2:]
	}
	halves = append(halves, slices.Concat(prev, clientDone))

	// All at once, and a well-behaved client beside them.
	done := make(chan struct{})
	var wg sync.WaitGroup
	defer wg.Wait()
	defer close(done)
	clients := make([]*rawClient, len(cases))
	start := time.Now()
	for i, tc := range cases {
		clients[i] = dialWS(t, addr)
		wg.Go(func() { writeEvery(clients[i].conn, tc.chunks, interval, done) })
	}
	streamer := dialWS(t, addr)
	wg.Go(func() { writeEvery(streamer.conn, halves, interval, done) })
	// Half a frame in the same write as the upgrade request, then silence:
	// the frame's deadline starts with the upgrade.
	early := &rawClient{conn: dialRaw(t, addr)}
	key := newSecKey()
	_, err := early.conn.Write(slices.Concat([]byte(upgradeRequest("/echo", key)), frame(true, opText, []byte("early"))[:8]))
	require.NoError(t, err)
	requireServed(t, addr)

	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, code := clients[i].readUntilClose(t)
			elapsed := time.Since(start)
			t.Logf("closed after at most %v", elapsed)
			assert.Equal(t, 1008, code)
			assert.GreaterOrEqual(t, elapsed, frameTimeout, "closed before FrameTimeout")
			for _, f := range got {
				assert.Equal(t, opPong, f.Op, "only pongs before the close: %v", got)
			}
			clients[i].requireEOF(t)
		})
	}
	t.Run("half a frame with the upgrade", func(t *testing.T) {
		early.br = bufio.NewReader(early.conn)
		require.NoError(t, early.conn.SetReadDeadline(time.Now().Add(rawTimeout)))
		readUpgradeResponse(t, early.br, key)
		got, code := early.readUntilClose(t)
		elapsed := time.Since(start)
		t.Logf("closed after at most %v", elapsed)
		assert.Empty(t, got)
		assert.Equal(t, 1008, code)
		assert.GreaterOrEqual(t, elapsed, frameTimeout, "closed before FrameTimeout")
		early.requireEOF(t)
	})
	t.Run("whole messages slowly", func(t *testing.T) {
		got, code := streamer.readUntilClose(t)
		assert.Equal(t, want, got)
		assert.Equal(t, 1000, code, "closed by the client, not by the server")
		streamer.requireEOF(t)
	})
	for _, c := range append(clients, streamer, early) {
		require.NoError(t, c.conn.Close())
	}
	requireReleased(t, srv, sockets)
	assert.Equal(t, uint64(len(cases)+1), srv.Stats().IdleCloses, "closed by the sweep: the slowlorises")
}

// chunks cuts p into pieces of n bytes.
func chunks(p []byte, n int) [][]byte {
	return slices.Collect(slices.Chunk(p, n))
}

// writeEvery writes chunks to conn one every interval until they are
// written, a write fails, or done is closed.
func writeEvery(conn net.Conn, chunks [][]byte, interval time.Duration, done <-chan struct{}) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for _, p := range chunks {
		if _, err := conn.Write(p); err != nil {
			return
		}
		select {
		case <-done:
			return
		case <-t.C:
		}
	}
}

// TestFaultHugeHeaderLines sends requests whose request line or one header
// is 1 MiB long. The server must answer 431 once it has seen MaxHeaderBytes,
// close, and keep none of the megabyte: the clients keep their connections
// open while the heap is measured.
func TestFaultHugeHeaderLines(t *testing.T) {
	const clients = 8
	srv, addr := startServer(t, wsconn.Config{MaxHeaderBytes: 8 << 10, CloseTimeout: time.Minute})
	huge := strings.Repeat("h", 1<<20)
	for _, tc := range []struct{ name, request string }{
		{"request line without CRLF", "GET /" + huge},
		{"upgrade header value", "GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nX-Huge: " + huge + "\r\n\r\n"},
		{"plain HTTP header value", "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Huge: " + huge + "\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sockets := heldSockets(t)
			request := []byte(tc.request)
			heap := heapInUse()
			base := srv.Stats().BytesIn
			conns := make([]*net.TCPConn, clients)
			errs := make(chan error, clients)
			for i := range conns {
				conns[i] = dialRaw(t, addr)
				require.NoError(t, conns[i].SetDeadline(time.Now().Add(rawTimeout)))
				go func() {
					_, err := conns[i].Write(request)
					errs <- err
				}()
			}
			for _, conn := range conns {
				resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
				require.NoError(t, err)
				assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
			}
			// The server reads on after its answer, discarding, until the
			// client's FIN: the writes complete.
			for range conns {
				require.NoError(t, <-errs)
			}
			requireBytesIn(t, srv, base+clients*uint64(len(request)))
			requireConnections(t, srv, clients)
			grown := int64(heapInUse()) - int64(heap)
			t.Logf("heap grew %d KiB with %d clients that sent %d KiB each", grown>>10, clients, len(request)>>10)
			assert.Less(t, grown, int64(clients<<20)/4, "the server keeps what a client sent past MaxHeaderBytes")
			requireServed(t, addr)

			for _, conn := range conns {
				require.NoError(t, conn.CloseWrite())
				requireClosedByServer(t, conn)
				require.NoError(t, conn.Close())
			}
			requireReleased(t, srv, sockets)
		})
	}
}

// heapInUse returns the bytes of live heap objects after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestFaultHugeDeclaredLength: a frame header that declares more than
// MaxMessageBytes (up to 2^63-1) fails the connection with 1009 at the
// header, and nothing is allocated for the declared length; a declared
// length within the limit is not allocated either, only what arrives.
// (TestConformance has the over-the-wire rows for lengths up to 2^63-1
// against a small limit.)
func TestFaultHugeDeclaredLength(t *testing.T) {
	const limit = 1 << 20
	t.Run("reader", func(t *testing.T) {
		for _, tc := range []struct {
			name   string
			prefix []byte // read before header, without an error
			header []byte
		}{
			{"2^63-1", nil, rawFrame(bitFIN|opBinary, true, 1<<63-1, nil)},
			{"2^63-1 text", nil, rawFrame(bitFIN|opText, true, 1<<63-1, nil)},
			{"limit+1", nil, rawFrame(bitFIN|opBinary, true, limit+1, nil)},
			{"limit+1 with a fragment before", frame(false, opBinary, []byte("x")), rawFrame(bitFIN|opCont, true, limit, nil)},
		} {
			t.Run(tc.name, func(t *testing.T) {
				var r wsconn.Reader
				var err error
				buf := make([]byte, len(tc.prefix)+len(tc.header))
				read := func(withHeader bool) func() {
					return func() {
						r.Reset(limit)
						copy(buf, tc.prefix) // Next unmasks in place
						_, _, _, err = r.Next(buf[:len(tc.prefix)])
						if err == nil && withHeader {
							copy(buf, tc.header)
							_, _, _, err = r.Next(buf[:len(tc.header)])
						}
					}
				}
				prefixAllocs := testing.AllocsPerRun(100, read(false))
				require.NoError(t, err)
				allocs := testing.AllocsPerRun(100, read(true))
				var ce *wsconn.CloseError
				require.ErrorAs(t, err, &ce)
				assert.Equal(t, 1009, int(ce.Code))
				assert.Equal(t, prefixAllocs, allocs, "allocations to refuse a frame by its header")
			})
		}
	})

	t.Run("reader, within the limit", func(t *testing.T) {
		// A frame that declares 64 MiB, the limit, brings 100 bytes: at
		// most a first assembly buffer (64 KiB) is allocated.
		const big = 64 << 20
		stream := rawFrame(bitFIN|opBinary, true, big, bytes.Repeat([]byte{1}, 100))
		var r wsconn.Reader
		r.Reset(big)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, n, ok, err := r.Next(stream)
		runtime.ReadMemStats(&after)
		require.NoError(t, err)
		require.False(t, ok)
		require.Equal(t, len(stream), n)
		allocated := after.TotalAlloc - before.TotalAlloc
		t.Logf("allocated %d bytes", allocated)
		assert.Less(t, allocated, uint64(1<<20), "allocated for the declared length, not for what arrived")
	})

	t.Run("server", func(t *testing.T) {
		srv, addr := startServer(t, wsconn.Config{MaxMessageBytes: limit})
		sockets := heldSockets(t)
		c := dialWS(t, addr)
		// The header alone: the answer cannot wait for the payload.
		require.NoError(t, c.writeFrames(frames(rawFrame(bitFIN|opBinary, true, limit+1, nil)), false))
		got, code := c.readUntilClose(t)
		assert.Empty(t, got)
		assert.Equal(t, 1009, code)
		c.requireEOF(t)
		requireServed(t, addr)
		require.NoError(t, c.conn.Close())
		requireReleased(t, srv, sockets)
		assert.Equal(t, uint64(1), srv.Stats().ProtocolErrors)
	})
}

// TestFaultGarbage writes random bytes after a valid handshake, after a
// first valid message, and in random frames, for several seeds. The server
// must fail each connection with a close code for a protocol violation, not
// panic, and release it.
func TestFaultGarbage(t *testing.T) {
	srv, addr := startServer(t, wsconn.Config{
		MaxMessageBytes: 64 << 10,
		// Garbage may declare a frame longer than what follows.
		FrameTimeout: 500 * time.Millisecond,
	})
	sockets := heldSockets(t)
	type garbageCase struct {
		name    string
		client  *rawClient
		message bool // a valid message before the garbage
	}
	var cases []garbageCase
	// Every client first, so that they are all served at once.
	for seed := range uint64(16) {
		rng := rand.New(rand.NewPCG(seed, 0xfa17))
		garbage := make([]byte, 8<<10)
		for i := range garbage {
			garbage[i] = byte(rng.Uint32())
		}
		for _, v := range []struct {
			kind    string
			message bool
			stream  []byte
		}{
			{"bytes", false, garbage},
			{"bytes after a message", true, slices.Concat(frame(true, opText, []byte("valid")), garbage)},
			{"frames", false, garbageFrames(rng, 8<<10)},
		} {
			tc := garbageCase{name: fmt.Sprintf("%s seed %d", v.kind, seed), client: dialWS(t, addr), message: v.message}
			if err := tc.client.writeFrames(frames(v.stream), false); err != nil {
				t.Logf("%s: write stopped: %v", tc.name, err)
			}
			cases = append(cases, tc)
		}
	}
	requireServed(t, addr)

	protocolCodes := []int{1002, 1007, 1008, 1009}
	codes := make(map[string]int) // by kind and code
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, code := tc.client.readUntilClose(t)
			codes[strings.Fields(tc.name)[0]+" "+strconv.Itoa(code)]++
			if tc.message {
				require.NotEmpty(t, got)
				assert.Equal(t, echoText("valid"), got[0])
			}
			assert.Contains(t, protocolCodes, code, "close code")
			tc.client.requireEOF(t)
			require.NoError(t, tc.client.conn.Close())
		})
	}
	t.Logf("close codes: %v", codes)
	requireReleased(t, srv, sockets)
	st := srv.Stats()
	assert.Equal(t, uint64(len(cases)), st.ProtocolErrors+st.IdleCloses, "every garbage connection failed")
}

// garbageFrames returns about n bytes of masked frames with random headers
// (reserved bits clear; mostly valid opcodes, but not close, which the
// server would answer in kind), lengths and payloads, ended by a frame with
// reserved bits set: a stream that gets deeper into the reader than random
// bytes, and fails however it is cut.
func garbageFrames(rng *rand.Rand, n int) []byte {
	ops := []byte{opCont, opText, opBinary, opPing, opPong, 0x3, 0xB}
	var out []byte
	for len(out) < n {
		b0 := ops[rng.IntN(len(ops))]
		if rng.IntN(4) != 0 {
			b0 |= bitFIN
		}
		declared := uint64(rng.IntN(126))
		switch rng.IntN(8) {
		case 0:
			declared = rng.Uint64()
		case 1:
			declared = uint64(rng.IntN(1 << 16))
		}
		payload := make([]byte, min(declared, uint64(rng.IntN(256))))
		for i := range payload {
			payload[i] = byte(rng.Uint32())
		}
		out = append(out, rawFrame(b0, true, declared, payload)...)
	}
	return append(out, rawFrame(bitFIN|bitRSV1|bitRSV2|bitRSV3|opBinary, true, 0, nil)...)
}

// TestMaxConnectionsDefault: by default the server holds as many
// connections as the process may open files, less a reserve, and answers
// 503 past that instead of failing accept with EMFILE.
func TestMaxConnectionsDefault(t *testing.T) {
	srv, err := wsconn.NewServer(wsconn.Config{})
	require.NoError(t, err)
	defer srv.Close()
	var lim syscall.Rlimit
	require.NoError(t, syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim))
	assert.Equal(t, int(lim.Cur)-64, srv.Config().MaxConnections)
	assert.Zero(t, srv.Config().MaxConnectionsPerIP, "no per-address limit by default")
}

// TestFaultConnectionLimits: past MaxConnections, or MaxConnectionsPerIP
// from one address, a client gets 503; a connection that ends, by a close
// or a reset, makes room again, and one address's count does not limit
// another's.
func TestFaultConnectionLimits(t *testing.T) {
	t.Run("MaxConnections", func(t *testing.T) {
		// A minute for the handshake: the silent client must stay.
		srv, addr := startServer(t, wsconn.Config{MaxConnections: 3, HandshakeTimeout: time.Minute})
		sockets := heldSockets(t)
		// Connections count whether upgraded or not: a silent TCP client
		// holds one.
		silent := dialRaw(t, addr)
		a := mustDialGorilla(t, addr, "")
		b := mustDialGorilla(t, addr, "")
		requireConnections(t, srv, 3)
		requireRefused(t, addr, "")
		st := srv.Stats()
		assert.Equal(t, uint64(1), st.Refused)
		assert.Equal(t, uint64(1), st.RefusedConnections)
		assert.Zero(t, st.RefusedPerIP)
		requireEcho(t, a, "still served")

		require.NoError(t, silent.Close())
		requireConnections(t, srv, 2)
		c := mustDialGorilla(t, addr, "")
		requireEcho(t, c, "room after a close")

		resetConn(t, c.NetConn())
		requireConnections(t, srv, 2)
		c = mustDialGorilla(t, addr, "")
		requireEcho(t, c, "room after a reset")
		requireRefused(t, addr, "")
		assert.Equal(t, uint64(2), srv.Stats().RefusedConnections)

		for _, c := range []*gorilla.Conn{a, b, c} {
			closeGorilla(t, c)
		}
		requireReleased(t, srv, sockets)
	})

	t.Run("MaxConnectionsPerIP", func(t *testing.T) {
		const ip2, ip3 = "127.0.0.2", "127.0.0.3"
		srv, addr := startServer(t, wsconn.Config{MaxConnectionsPerIP: 2})
		sockets := heldSockets(t)
		a := mustDialGorilla(t, addr, ip2)
		b := mustDialGorilla(t, addr, ip2)
		requireRefused(t, addr, ip2)
		// Another address has its own count.
		d := mustDialGorilla(t, addr, ip3)
		e := mustDialGorilla(t, addr, ip3)
		requireRefused(t, addr, ip3)
		requireServed(t, addr) // from 127.0.0.1
		st := srv.Stats()
		assert.Equal(t, uint64(2), st.Refused)
		assert.Equal(t, uint64(2), st.RefusedPerIP)
		assert.Zero(t, st.RefusedConnections)
		requireEcho(t, a, "still served")

		closeGorilla(t, a)
		requireConnections(t, srv, 3)
		f := mustDialGorilla(t, addr, ip2)
		requireEcho(t, f, "room after a close")

		// After a reset the socket no longer knows its peer: the count
		// must still go down.
		resetConn(t, b.NetConn())
		requireConnections(t, srv, 3)
		g := mustDialGorilla(t, addr, ip2)
		requireEcho(t, g, "room after a reset")
		// Counted once each, not released twice: two held, the third refused.
		requireRefused(t, addr, ip2)
		assert.Equal(t, uint64(3), srv.Stats().RefusedPerIP)

		for _, c := range []*gorilla.Conn{d, e, f, g} {
			closeGorilla(t, c)
		}
		requireReleased(t, srv, sockets)
		// All counts back to zero: an address gets its full allowance.
		for range 2 {
			closeGorilla(t, mustDialGorilla(t, addr, ip3))
			// The server releases (and uncounts) a connection when it
			// reads the client's FIN, a moment after closeGorilla.
			requireConnections(t, srv, 0)
		}
		h := mustDialGorilla(t, addr, ip3)
		i := mustDialGorilla(t, addr, ip3)
		requireRefused(t, addr, ip3)
		closeGorilla(t, h)
		closeGorilla(t, i)
		requireReleased(t, srv, sockets)
	})
}

// mustDialGorilla dials addr's /echo from localIP; the connection is
// closed when the test ends.
func mustDialGorilla(t testing.TB, addr, localIP string) *gorilla.Conn {
	t.Helper()
	c, _, err := dialGorilla(addr, localIP)
	require.NoError(t, err, "dial from %q", localIP)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// requireRefused requires that a client from localIP gets 503.
func requireRefused(t testing.TB, addr, localIP string) {
	t.Helper()
	c, resp, err := dialGorilla(addr, localIP)
	if c != nil {
		_ = c.Close()
	}
	require.ErrorIs(t, err, gorilla.ErrBadHandshake, "dial from %q", localIP)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
}
