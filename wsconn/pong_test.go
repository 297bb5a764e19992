package wsconn

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// recordingEcho is Echo that hands each opened Conn to the test.
type recordingEcho struct {
	Echo
	opened chan *Conn
}

func (r recordingEcho) OnOpen(c *Conn) { r.opened <- c }

// serveRecording serves cfg with recordingEcho on every path and returns
// the address and the channel of opened connections.
func serveRecording(t *testing.T, cfg Config) (string, chan *Conn) {
	t.Helper()
	return serveRecordingWith(t, cfg, func(r recordingEcho) Handler { return r })
}

// serveRecordingWith is serveRecording with the Handler that wrap makes of
// the recordingEcho.
func serveRecordingWith(t *testing.T, cfg Config, wrap func(recordingEcho) Handler) (string, chan *Conn) {
	t.Helper()
	opened := make(chan *Conn, 16)
	cfg.Upgrade = func(*Request) (Handler, error) { return wrap(recordingEcho{opened: opened}), nil }
	_, addr := serveConfig(t, cfg)
	return addr, opened
}

// smallWindow is a net.Dialer's Control that gives the socket a 4 KiB
// receive buffer before it connects, which keeps its TCP window small.
func smallWindow(_, _ string, rc syscall.RawConn) error {
	var serr error
	err := rc.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
	})
	return errors.Join(err, serr)
}

// dialRecorded opens a WebSocket to addr and returns it with its Conn.
// With small, a small receive buffer, set before connecting, keeps the TCP
// window small, and the server's send buffer is made small too: what the
// client does not read stays in the server's queue.
func dialRecorded(t *testing.T, addr string, opened chan *Conn, small bool) (net.Conn, *bufio.Reader, *Conn) {
	t.Helper()
	d := net.Dialer{Timeout: 5 * time.Second}
	if small {
		d.Control = smallWindow
	}
	nc, br, c := dialRecordedWith(t, d, addr, opened)
	if small {
		// Setting it turns off the kernel's tuning, so that a few KiB
		// unread fill the socket.
		require.NoError(t, unix.SetsockoptInt(int(c.fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096))
	}
	return nc, br, c
}

// dialRecordedWith opens a WebSocket to addr with d and returns it with its
// Conn, as the server opened it.
func dialRecordedWith(t *testing.T, d net.Dialer, addr string, opened chan *Conn) (net.Conn, *bufio.Reader, *Conn) {
	t.Helper()
	nc, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	_, err = io.WriteString(nc, "GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(nc)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	select {
	case c := <-opened:
		return nc, br, c
	case <-time.After(5 * time.Second):
		t.Fatal("the server did not open the connection")
		return nil, nil, nil
	}
}

// queueState returns c's queued frames and bytes.
func queueState(c *Conn) (frames, bytes int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.q != nil {
		frames = c.q.len()
	}
	return frames, c.queued
}

// TestPingFloodOnePong: a client that pings without reading costs the
// server its queue limit at most, not one queued pong per ping (each counted
// 2 bytes): once the socket is full, a pong not yet begun answers the latest
// ping instead (RFC 6455 5.5.3 allows it). When the client reads at last,
// every ping has been read, and the last pong answers the last ping.
func TestPingFloodOnePong(t *testing.T) {
	const (
		pings = 100_000 // 13 MB of pings, 12.7 MB of pongs if answered one by one
		limit = 64 << 10
	)
	addr, opened := serveRecording(t, Config{MaxQueueBytes: limit})
	nc, br, c := dialRecorded(t, addr, opened, true)

	flood := make([]byte, 0, pings*131)
	for i := range pings {
		p := make([]byte, 125)
		binary.BigEndian.PutUint32(p, uint32(i))
		flood = append(flood, clientFrame(true, ws.OpPing, p)...)
	}
	written := make(chan error, 1)
	go func() {
		_ = nc.SetWriteDeadline(time.Now().Add(20 * time.Second))
		_, err := nc.Write(flood)
		written <- err
	}()
	// While the client does not read, the queue stays within its limit.
	var in uint64
	maxFrames, maxCharge := 0, 0
	require.Eventually(t, func() bool {
		frames, queued := queueState(c)
		maxFrames = max(maxFrames, frames)
		maxCharge = max(maxCharge, queued+frames*frameOverhead)
		now := c.srv.bytesIn.Load()
		settled := now == in
		in = now
		return settled
	}, 20*time.Second, 200*time.Millisecond, "the server never settled")
	t.Logf("unread, the server settled with at most %d frames queued, %d of %d bytes of pings read", maxFrames, in, len(flood))
	assert.LessOrEqual(t, maxCharge, limit+127+frameOverhead, "queue charge while the client did not read")

	// The client reads: the last pong answers the last ping.
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(20*time.Second)))
	var last uint32
	pongs := 0
	readPong := func() {
		h, err := ws.ReadHeader(br)
		require.NoError(t, err)
		p := make([]byte, h.Length)
		_, err = io.ReadFull(br, p)
		require.NoError(t, err)
		require.Equal(t, ws.OpPong, h.OpCode)
		require.Len(t, p, 125)
		n := binary.BigEndian.Uint32(p)
		require.GreaterOrEqual(t, n, last, "pongs answer pings in order")
		last = n
		pongs++
	}
	for last != pings-1 {
		readPong()
	}
	require.NoError(t, <-written)
	t.Logf("%d pings answered by %d pongs", pings, pongs)
}

// TestQueueChargesFrames: a flood of empty messages echoed to a client that
// does not read stops being read once the queued frames, each charged
// frameOverhead beyond its 2 bytes, reach MaxQueueBytes. Counted at 2 bytes
// each, 32,768 frames got in under a 64 KiB limit. (A turn checks the limit
// between reads, so the messages of one read buffer may still be echoed past
// it; that bound is the reader's, not the queue's.)
func TestQueueChargesFrames(t *testing.T) {
	const limit = 64 << 10
	addr, opened := serveRecording(t, Config{MaxQueueBytes: limit})
	nc, _, c := dialRecorded(t, addr, opened, true)
	msg := clientBinary(nil)
	flood := bytes.Repeat(msg, 1_000_000)
	go func() {
		// Far more than the sockets hold: the write stalls once the
		// server stops reading, and the cleanup's close ends it.
		_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, _ = nc.Write(flood)
	}()
	var frames, queued int
	require.Eventually(t, func() bool {
		f, q := queueState(c)
		settled := f > 0 && f == frames && q == queued
		frames, queued = f, q
		return settled
	}, 10*time.Second, 200*time.Millisecond, "the server never stopped reading")
	t.Logf("queued %d frames, %d bytes, charged %d", frames, queued, queued+frames*frameOverhead)
	perRead := readBufferBytes / len(msg)
	assert.LessOrEqual(t, frames, limit/(2+frameOverhead)+perRead, "frames queued under a %d-byte limit", limit)
}
