package wsconn

import (
	"bytes"
	"context"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestSendBufferBounded: with SendBufferBytes, what a client that reads
// nothing makes the server hold in its socket is bounded by about twice it
// (the kernel doubles it) and the client's own window; then the write queue
// fills. Without it the kernel grew the send buffer for such a client up to
// tcp_wmem's maximum, 4 MiB on Linux, beyond --max-queue-bytes.
func TestSendBufferBounded(t *testing.T) {
	const sndbuf = 20000 // more than the listener's default, 16 KiB on Linux
	opened := make(chan *Conn, 1)
	s, err := NewServer(Config{MaxQueueBytes: 64 << 10, SendBufferBytes: sndbuf,
		Upgrade: func(*Request) (Handler, error) { return recordingEcho{opened: opened}, nil }})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	// Connections take the buffer from the listener once Serve has set
	// it: those the kernel completed before keep the system's.
	rc, err := ln.(*net.TCPListener).SyscallConn()
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		n := 0
		_ = rc.Control(func(fd uintptr) { n, _ = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF) })
		return n >= sndbuf
	}, 5*time.Second, time.Millisecond)
	addr := ln.Addr().String()
	_, _, c := dialRecorded(t, addr, opened, false)
	require.Eventually(t, func() bool { return c.sched.Load() == turnIdle }, 5*time.Second, time.Millisecond)

	frame := NewFrame(ws.OpBinary, bytes.Repeat([]byte{'b'}, 4000))
	sent := 0
	for range 4000 { // 16 MB at most
		if err := c.Send(frame, 0); err != nil {
			require.ErrorIs(t, err, ErrQueueFull)
			break
		}
		sent += len(frame)
		if c.QueuedBytes() > 0 {
			// The socket refused some: give the kernel a moment to
			// grow the buffer, as it would for a client that reads
			// nothing for a while.
			time.Sleep(time.Millisecond)
		}
	}
	taken := sent - c.QueuedBytes()
	t.Logf("the socket took %d bytes, the queue holds %d", taken, c.QueuedBytes())
	// The client's receive window (tcp_rmem's default, 128 KiB, which
	// does not grow for a client that reads nothing) and the send buffer.
	assert.Less(t, taken, 512<<10, "bytes the socket took")
}
