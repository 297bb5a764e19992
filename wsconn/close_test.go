package wsconn_test

import (
	"bytes"
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/wsconn"
)

// TestPeerCloseReleasesAtOnce: once the server has answered a client's
// close frame, the closing handshake is over; the server closes the TCP
// connection then (RFC 6455 section 7.1.1), without waiting, up to
// CloseTimeout, for a FIN the client may be slow to send. The client reads
// the answer, then EOF, while it still holds its socket open.
func TestPeerCloseReleasesAtOnce(t *testing.T) {
	srv, addr := startServer(t, wsconn.Config{CloseTimeout: time.Minute})
	c := dialWS(t, addr)
	require.NoError(t, c.writeFrames(frames(frame(true, opText, []byte("hi")), closeFrame(1000, "bye")), false))
	got, code := c.readUntilClose(t)
	assert.Equal(t, []serverFrame{echoText("hi")}, got)
	assert.Equal(t, 1000, code)
	c.requireEOF(t)
	requireConnections(t, srv, 0)
	assert.Equal(t, uint64(0), srv.Stats().Resets, "closed, not reset")
}

// TestPeerCloseNotReadingIsReset: a client that sends a close frame after
// asking for more output than its window takes, and reads nothing, is not
// released at once: closed, its socket would keep the unsent bytes,
// orphaned, until the kernel's own timeouts. It is held for CloseTimeout
// and then reset, which frees them.
func TestPeerCloseNotReadingIsReset(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the kernel's send queue is asked on Linux only")
	}
	srv, addr := startServer(t, wsconn.Config{CloseTimeout: 300 * time.Millisecond})
	d := net.Dialer{Timeout: rawTimeout, Control: wsconn.SmallWindow}
	nc, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = nc.Close() })
	c, err := upgradeConn(nc.(*net.TCPConn))
	require.NoError(t, err)
	echoed := bytes.Repeat([]byte("x"), 60<<10)
	require.NoError(t, c.writeFrames(frames(frame(true, opBinary, echoed), closeFrame(1000, "")), false))
	require.EventuallyWithT(t, func(ct *assert.CollectT) {
		assert.Equal(ct, uint64(1), srv.Stats().Resets, "reset at CloseTimeout")
	}, rawTimeout, 5*time.Millisecond)
	requireConnections(t, srv, 0)
}

// TestServerCloseWaitsForPeer: a close the server begins still waits for
// the client's answer; the client's close frame, then its FIN, end it.
func TestServerCloseWaitsForPeer(t *testing.T) {
	srv, addr := startServer(t, wsconn.Config{
		CloseTimeout: time.Minute,
		Upgrade: func(*wsconn.Request) (wsconn.Handler, error) {
			return closingHandler{}, nil
		},
	})
	c := dialWS(t, addr)
	require.NoError(t, c.writeFrames(frames(frame(true, opText, []byte("close me"))), false))
	_, code := c.readUntilClose(t)
	assert.Equal(t, 4000, code)
	c.requireEOF(t) // the server's half-close
	requireConnections(t, srv, 1)
	require.NoError(t, c.writeFrames(frames(closeFrame(4000, "")), false))
	require.NoError(t, c.conn.CloseWrite())
	requireConnections(t, srv, 0)
}

// closingHandler closes the connection with 4000 at its first message.
type closingHandler struct{ wsconn.Echo }

func (closingHandler) OnMessage(c *wsconn.Conn, _ ws.OpCode, _ []byte) { c.Close(4000, "") }
