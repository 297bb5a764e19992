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
)

// TestSendBufferBounded: with SendBufferBytes, what a client that reads
// nothing makes the server hold in its socket is bounded by about twice it
// (Linux doubles it) and the client's own window; then the write queue
// fills. Without it Linux grew the send buffer for such a client up to
// tcp_wmem's maximum, 4 MiB, beyond --max-queue-bytes.
func TestSendBufferBounded(t *testing.T) {
	const sndbuf = 20000
	opened := make(chan *Conn, 1)
	cfg := Config{MaxQueueBytes: 64 << 10, SendBufferBytes: sndbuf,
		Upgrade: func(*Request) (Handler, error) { return recordingEcho{opened: opened}, nil }}
	s, err := NewServer(cfg)
	require.NoError(t, err)
	// Set before listen(2), as fanout serve does: Serve sets it too, but
	// a connection the kernel completed before that would keep the
	// system's.
	lc := net.ListenConfig{Control: ListenControl(cfg)}
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	require.NoError(t, err)
	serveOn(t, s, ln)
	// A small window (4 KiB of receive buffer, set before connecting),
	// whatever the system's default.
	_, _, c := dialRecordedWith(t, net.Dialer{Timeout: 5 * time.Second, Control: smallWindow}, ln.Addr().String(), opened)
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
	// The send buffer (doubled by Linux) and the client's small window.
	assert.Less(t, taken, 256<<10, "bytes the socket took")
}
