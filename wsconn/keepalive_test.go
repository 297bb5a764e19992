package wsconn_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/wsconn"
)

// keepAliveMux serves /healthz, /big (a body of 4 MiB, more than socket
// buffers hold) and /close (a handler that asks for Connection: close).
func keepAliveMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte(strings.Repeat("x", 4<<20)))
	})
	mux.HandleFunc("/close", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye\n")
	})
	return mux
}

// rawHTTP opens a TCP connection to addr for HTTP requests written by hand,
// with a deadline for the whole test; it is closed when the test ends.
func rawHTTP(t *testing.T, addr string) (*net.TCPConn, *bufio.Reader) {
	t.Helper()
	conn := dialRaw(t, addr)
	require.NoError(t, conn.SetDeadline(time.Now().Add(rawTimeout)))
	return conn, bufio.NewReader(conn)
}

// readResponse reads one response from br and its body.
func readResponse(t *testing.T, br *bufio.Reader) (*http.Response, string) {
	t.Helper()
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp, string(body)
}

const getHealthz = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"

// TestHTTPKeepAlive: Go's HTTP client sends many requests over one
// connection, each answered with Connection: keep-alive, and the server
// counts them as reused; once the client goes, nothing is counted as an
// aborted handshake and no handshake stays in flight.
func TestHTTPKeepAlive(t *testing.T) {
	srv, addr := startServer(t, wsconn.Config{HTTP: keepAliveMux()})
	tr := &http.Transport{}
	client := &http.Client{Transport: tr, Timeout: rawTimeout}
	reused := 0
	const n = 20
	for range n {
		req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/healthz", nil)
		require.NoError(t, err)
		req = req.WithContext(httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
			GotConn: func(info httptrace.GotConnInfo) {
				if info.Reused {
					reused++
				}
			},
		}))
		resp, err := client.Do(req)
		require.NoError(t, err)
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		assert.Equal(t, "ok\n", string(body))
		assert.False(t, resp.Close, "the response keeps the connection alive")
	}
	assert.Equal(t, n-1, reused, "every request after the first on the same connection")
	st := srv.Stats()
	assert.Equal(t, uint64(1), st.Accepted)
	assert.Equal(t, uint64(n), st.HTTPRequests)
	assert.Equal(t, uint64(n-1), st.HTTPReused)
	assert.Equal(t, int64(1), st.Handshakes, "a kept-alive connection between requests")

	tr.CloseIdleConnections()
	require.Eventually(t, func() bool { return srv.Connections() == 0 }, rawTimeout, time.Millisecond)
	st = srv.Stats()
	assert.Zero(t, st.Handshakes)
	assert.Zero(t, st.HandshakeAborts, "a kept-alive connection closed between requests aborted nothing")
}

// TestHTTPKeepAliveBounds: the last request that HTTPKeepAliveRequests
// allows is answered with Connection: close, and so are a request that asks
// for close, an HTTP/1.0 request and a handler's own Connection: close.
func TestHTTPKeepAliveBounds(t *testing.T) {
	_, addr := startServer(t, wsconn.Config{HTTP: keepAliveMux(), HTTPKeepAliveRequests: 3})
	t.Run("request limit", func(t *testing.T) {
		conn, br := rawHTTP(t, addr)
		for i := range 3 {
			_, err := io.WriteString(conn, getHealthz)
			require.NoError(t, err)
			resp, body := readResponse(t, br)
			assert.Equal(t, "ok\n", body)
			assert.Equal(t, i == 2, resp.Close, "request %d", i+1)
			if i < 2 {
				// The hint of how long and how many more.
				assert.Equal(t, fmt.Sprintf("timeout=30, max=%d", 2-i), resp.Header.Get("Keep-Alive"))
			} else {
				assert.Empty(t, resp.Header.Get("Keep-Alive"))
			}
		}
		_, err := br.ReadByte()
		require.ErrorIs(t, err, io.EOF, "closed after the last request")
	})
	for _, tc := range []struct{ name, request string }{
		{"client asks for close", "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"},
		{"HTTP/1.0", "GET /healthz HTTP/1.0\r\n\r\n"},
		{"handler asks for close", "GET /close HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"refused before a handler", "POST /healthz HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, br := rawHTTP(t, addr)
			_, err := io.WriteString(conn, tc.request)
			require.NoError(t, err)
			resp, _ := readResponse(t, br)
			assert.True(t, resp.Close, "Connection: close")
			_, err = br.ReadByte()
			require.ErrorIs(t, err, io.EOF)
		})
	}
	t.Run("HTTP/1.0 keep-alive", func(t *testing.T) {
		conn, br := rawHTTP(t, addr)
		for range 2 {
			_, err := io.WriteString(conn, "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
			require.NoError(t, err)
			resp, body := readResponse(t, br)
			assert.Equal(t, "ok\n", body)
			assert.Equal(t, "keep-alive", resp.Header.Get("Connection"))
		}
	})
}

// TestHTTPKeepAliveIdle: a kept-alive connection that sends nothing more is
// closed after HTTPIdleTimeout, which is not an aborted handshake; one whose
// next request has begun has HandshakeTimeout from then, and going past it
// is one.
func TestHTTPKeepAliveIdle(t *testing.T) {
	srv, addr := startServer(t, wsconn.Config{
		HTTP:             keepAliveMux(),
		HTTPIdleTimeout:  200 * time.Millisecond,
		HandshakeTimeout: 200 * time.Millisecond,
	})
	conn, br := rawHTTP(t, addr)
	_, err := io.WriteString(conn, getHealthz)
	require.NoError(t, err)
	resp, _ := readResponse(t, br)
	require.False(t, resp.Close)
	assert.Equal(t, "max=999", resp.Header.Get("Keep-Alive"), "no timeout hint under a second, which would round up")
	_, err = br.ReadByte()
	require.ErrorIs(t, err, io.EOF, "closed when idle past HTTPIdleTimeout")
	require.Eventually(t, func() bool { return srv.Connections() == 0 }, rawTimeout, time.Millisecond)
	assert.Zero(t, srv.Stats().HandshakeAborts)
	assert.Zero(t, srv.Stats().Handshakes)
}

// TestHTTPKeepAliveSlowRequest: on a kept-alive connection with a long idle
// timeout, a request that begins and never ends is held to
// HandshakeTimeout, not to the idle timeout, and counted as aborted.
func TestHTTPKeepAliveSlowRequest(t *testing.T) {
	srv, addr := startServer(t, wsconn.Config{
		HTTP:             keepAliveMux(),
		HTTPIdleTimeout:  time.Minute,
		HandshakeTimeout: 200 * time.Millisecond,
	})
	conn, br := rawHTTP(t, addr)
	_, err := io.WriteString(conn, getHealthz)
	require.NoError(t, err)
	resp, _ := readResponse(t, br)
	require.False(t, resp.Close)
	_, err = io.WriteString(conn, "GET /healthz HTTP/1.1\r\n")
	require.NoError(t, err)
	_, err = br.ReadByte()
	require.ErrorIs(t, err, io.EOF, "a begun request has HandshakeTimeout, not a minute")
	require.Eventually(t, func() bool { return srv.Stats().HandshakeAborts == 1 }, rawTimeout, time.Millisecond)
}

// TestHTTPKeepAliveThenUpgrade: a WebSocket upgrade may follow a plain
// request on the same connection.
func TestHTTPKeepAliveThenUpgrade(t *testing.T) {
	srv, addr := startServer(t, wsconn.Config{HTTP: keepAliveMux()})
	conn, br := rawHTTP(t, addr)
	_, err := io.WriteString(conn, getHealthz)
	require.NoError(t, err)
	resp, body := readResponse(t, br)
	require.False(t, resp.Close)
	require.Equal(t, "ok\n", body)

	key := newSecKey()
	_, err = io.WriteString(conn, upgradeRequest("/echo", key))
	require.NoError(t, err)
	readUpgradeResponse(t, br, key)
	c := &rawClient{conn: conn, br: br}
	require.NoError(t, c.writeFrames(frames(frame(true, opText, []byte("after keep-alive"))), false))
	f, err := c.readFrame()
	require.NoError(t, err)
	assert.Equal(t, echoText("after keep-alive"), f)
	st := srv.Stats()
	assert.Equal(t, int64(1), st.WebSockets)
	assert.Zero(t, st.Handshakes)
}

// TestHTTPPipelinedClosed: requests sent back to back without waiting for
// the answers (pipelining) get one answer, with Connection: close; the rest
// is dropped, as RFC 9112 9.3.2 lets a server do.
func TestHTTPPipelinedClosed(t *testing.T) {
	srv, addr := startServer(t, wsconn.Config{HTTP: keepAliveMux()})
	conn, br := rawHTTP(t, addr)
	_, err := io.WriteString(conn, getHealthz+getHealthz)
	require.NoError(t, err)
	resp, body := readResponse(t, br)
	assert.Equal(t, "ok\n", body)
	assert.True(t, resp.Close)
	_, err = br.ReadByte()
	require.ErrorIs(t, err, io.EOF)
	assert.Equal(t, uint64(1), srv.Stats().HTTPRequests)
}

// TestHTTPKeepAliveUnreadResponses: a client that asks for a large response
// and then sends requests without reading it gets nothing more served until
// it reads: the server holds one response, not one per request.
func TestHTTPKeepAliveUnreadResponses(t *testing.T) {
	srv, addr := startServer(t, wsconn.Config{HTTP: keepAliveMux()})
	conn := dialRaw(t, addr)
	require.NoError(t, conn.SetDeadline(time.Now().Add(rawTimeout)))
	_, err := io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return srv.Stats().HTTPRequests == 1 }, rawTimeout, time.Millisecond)
	require.Eventually(t, func() bool { return srv.QueuedBytes() > 0 }, rawTimeout, time.Millisecond,
		"the 4 MiB response does not fit in the socket buffers")
	for range 20 {
		_, err := io.WriteString(conn, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		time.Sleep(5 * time.Millisecond) // each in a segment of its own
	}
	time.Sleep(200 * time.Millisecond)
	assert.Equal(t, uint64(1), srv.Stats().HTTPRequests, "nothing read while the response is unwritten")
	assert.LessOrEqual(t, srv.QueuedBytes(), int64(4<<20+200))

	br := bufio.NewReader(conn)
	_, body := readResponse(t, br)
	assert.Len(t, body, 4<<20)
	// The requests sent meanwhile arrived together: the next is answered,
	// with close, since more follow it.
	resp, body := readResponse(t, br)
	assert.Len(t, body, 4<<20)
	assert.True(t, resp.Close)
}

// TestShutdownKeepAlive: Shutdown closes a kept-alive connection between
// requests at once, and lets one whose response is still being written
// finish it first.
func TestShutdownKeepAlive(t *testing.T) {
	srv, err := wsconn.NewServer(wsconn.Config{HTTP: keepAliveMux()})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	addr := ln.Addr().String()

	idle := dialRaw(t, addr)
	require.NoError(t, idle.SetDeadline(time.Now().Add(rawTimeout)))
	idleBR := bufio.NewReader(idle)
	_, err = io.WriteString(idle, getHealthz)
	require.NoError(t, err)
	resp, _ := readResponse(t, idleBR)
	require.False(t, resp.Close)

	busy := dialRaw(t, addr)
	require.NoError(t, busy.SetDeadline(time.Now().Add(rawTimeout)))
	_, err = io.WriteString(busy, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.Eventually(t, func() bool { return srv.QueuedBytes() > 0 }, rawTimeout, time.Millisecond)

	ctx, cancel := context.WithTimeout(context.Background(), rawTimeout)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	_, err = idleBR.ReadByte()
	require.ErrorIs(t, err, io.EOF, "the idle connection is closed")
	_, body := readResponse(t, bufio.NewReader(busy))
	assert.Len(t, body, 4<<20, "the response in flight is written whole")
	require.NoError(t, busy.Close())
	require.NoError(t, <-shut)
	require.ErrorIs(t, <-served, wsconn.ErrServerClosed)
}
