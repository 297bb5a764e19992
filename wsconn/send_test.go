package wsconn

import (
	"bufio"
	"bytes"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSendOptions: with the queue full, a shared frame is refused and a
// Reply is not; a Copy frame is the caller's to reuse at once; everything
// taken arrives in order once the peer reads; a closing connection refuses
// every kind of frame.
func TestSendOptions(t *testing.T) {
	const limit = 64 << 10
	addr, opened := serveRecording(t, Config{MaxQueueBytes: limit})
	nc, br, c := dialRecorded(t, addr, opened, true)
	require.Eventually(t, func() bool { return c.sched.Load() == turnIdle }, 5*time.Second, time.Millisecond)

	var want [][]byte // payloads
	payload := bytes.Repeat([]byte{'s'}, 4000)
	shared := NewFrame(ws.OpBinary, payload)
	for len(want) < 1000 {
		err := c.Send(shared, 0)
		if err != nil {
			require.ErrorIs(t, err, ErrQueueFull)
			break
		}
		want = append(want, payload)
	}
	require.Less(t, len(want), 1000, "the queue filled")
	require.LessOrEqual(t, c.QueuedBytes(), limit)
	assert.ErrorIs(t, c.Send(shared, Copy), ErrQueueFull, "a Copy is refused as well")

	// A reply goes past the limit; a copied one is copied, since the
	// socket takes nothing now.
	reply := NewFrame(ws.OpText, []byte("reply"))
	require.NoError(t, c.Send(reply, Reply))
	want = append(want, []byte("reply"))
	mine := NewFrame(ws.OpText, []byte("mine!"))
	require.NoError(t, c.Send(mine, Reply|Copy))
	want = append(want, []byte("mine!"))
	copy(mine[2:], "XXXXX")
	assert.Greater(t, c.QueuedBytes(), limit-4000, "replies queued past what refused the shared frame")

	require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	for i, w := range want {
		h, p, err := readServerFrame(br)
		require.NoError(t, err, "frame %d", i)
		require.True(t, bytes.Equal(w, p), "frame %d (%v): %d bytes %.8q, want %d %.8q", i, h.OpCode, len(p), p, len(w), w)
	}

	c.Close(ws.StatusNormalClosure, "")
	for _, opts := range []SendOption{0, Copy, Reply, Copy | Reply} {
		assert.ErrorIs(t, c.Send(shared, opts), ErrClosed, "options %b", opts)
		var b Batch
		assert.ErrorIs(t, b.Send(c, shared, opts), ErrClosed, "options %b, batched", opts)
		assert.Empty(t, b.conns)
	}
}

// TestBatch: a Batch writes nothing until Flush, lists each connection it
// must flush once however many frames it queued to it, and Flush writes
// them all, in order.
func TestBatch(t *testing.T) {
	addr, opened := serveRecording(t, Config{})
	nc1, br1, c1 := dialRecorded(t, addr, opened, false)
	nc2, br2, c2 := dialRecorded(t, addr, opened, false)
	for _, c := range []*Conn{c1, c2} {
		require.Eventually(t, func() bool { return c.sched.Load() == turnIdle }, 5*time.Second, time.Millisecond)
	}

	var b Batch
	frames := [][]byte{
		NewFrame(ws.OpText, []byte("one")),
		NewFrame(ws.OpText, []byte("two")),
		NewFrame(ws.OpText, []byte("three")),
	}
	writes := c1.srv.writeCalls.Load()
	scratch := make([]byte, 0, 16)
	for _, f := range frames {
		require.NoError(t, b.Send(c1, f, 0))
		scratch = append(scratch[:0], f...)
		require.NoError(t, b.Send(c2, scratch, Copy))
	}
	assert.Equal(t, []*Conn{c1, c2}, b.conns, "each connection once")
	assert.Equal(t, writes, c1.srv.writeCalls.Load(), "no write before Flush")
	for _, c := range []*Conn{c1, c2} {
		frames, _ := queueState(c)
		assert.Equal(t, 3, frames, "frames queued")
	}

	b.Flush()
	assert.Empty(t, b.conns)
	assert.Equal(t, writes+2, c1.srv.writeCalls.Load(), "one writev per connection")
	for _, p := range []struct {
		nc net.Conn
		br *bufio.Reader
	}{{nc1, br1}, {nc2, br2}} {
		require.NoError(t, p.nc.SetReadDeadline(time.Now().Add(5*time.Second)))
		for _, f := range frames {
			_, got, err := readServerFrame(p.br)
			require.NoError(t, err)
			assert.Equal(t, f[2:], got)
		}
	}
}
