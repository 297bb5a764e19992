package wsconn_test

import (
	"context"
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/wsconn"
)

// backlog is a Handler that queues n binary frames of size bytes as soon as
// a connection opens, each starting with its index: a client owed more than
// the sockets hold. It closes queued when all are queued.
type backlog struct {
	n, size int
	queued  chan struct{}
}

func (b backlog) OnOpen(c *wsconn.Conn) {
	for i := range b.n {
		p := make([]byte, b.size)
		binary.BigEndian.PutUint32(p, uint32(i))
		if err := c.Send(wsconn.NewFrame(ws.OpBinary, p), 0); err != nil {
			panic(fmt.Sprint(i, err)) // the test sizes the queue to take all of it
		}
	}
	close(b.queued)
}

func (backlog) OnMessage(*wsconn.Conn, ws.OpCode, []byte) {}
func (backlog) OnClose(*wsconn.Conn)                      {}

// TestShutdownDeliversBacklog: a client owed 3,000 frames (12 MiB, far more
// than the sockets hold) starts reading only after Shutdown has begun and
// CloseTimeout has long passed. It gets every frame, in order, then close
// 1001, and Shutdown returns within its context: the drain is bounded by
// Shutdown's context, not by CloseTimeout.
func TestShutdownDeliversBacklog(t *testing.T) {
	const n, size = 3000, 4 << 10
	queued := make(chan struct{})
	srv, addr := startServer(t, wsconn.Config{
		MaxQueueBytes: 2 * n * size,
		CloseTimeout:  100 * time.Millisecond,
		Upgrade: func(*wsconn.Request) (wsconn.Handler, error) {
			return backlog{n: n, size: size, queued: queued}, nil
		},
	})
	c := dialWS(t, addr)
	select {
	case <-queued:
	case <-time.After(rawTimeout):
		t.Fatal("the backlog was not queued")
	}
	require.Greater(t, srv.QueuedBytes(), int64(n*size/2), "the backlog is queued in the server, not in the sockets")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	time.Sleep(5 * 100 * time.Millisecond) // CloseTimeout five times over

	require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(rawTimeout)))
	for i := range n {
		f, err := c.readFrame()
		require.NoError(t, err, "frame %d of %d", i, n)
		require.Equal(t, byte(opBinary), f.Op, "frame %d of %d", i, n)
		require.Equal(t, uint32(i), binary.BigEndian.Uint32(f.Payload), "frame %d out of order", i)
	}
	f, err := c.readFrame()
	require.NoError(t, err, "the close frame after the backlog")
	require.Equal(t, byte(opClose), f.Op)
	assert.Equal(t, closePayload(1001, "server shutting down"), f.Payload)
	require.NoError(t, c.writeFrames(frames(closeFrame(1001, "")), false))
	c.requireEOF(t)
	select {
	case err := <-shut:
		assert.NoError(t, err)
	case <-time.After(rawTimeout):
		t.Fatal("Shutdown did not return once every connection closed")
	}
	assert.Zero(t, srv.Stats().Resets, "no connection was reset")
}

// TestShutdownPeerTimesOutAfterCloseFrame: once a connection's close frame
// is written, a peer that never closes its side is released after
// CloseTimeout, not kept until Shutdown's context ends.
func TestShutdownPeerTimesOutAfterCloseFrame(t *testing.T) {
	srv, addr := startServer(t, wsconn.Config{CloseTimeout: 100 * time.Millisecond})
	c := dialWS(t, addr)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	_, code := c.readUntilClose(t)
	assert.Equal(t, 1001, code)
	// The client reads the close frame and never answers it.
	select {
	case err := <-shut:
		assert.NoError(t, err)
	case <-time.After(rawTimeout):
		t.Fatal("Shutdown waited on a peer that never closed, past CloseTimeout")
	}
}
