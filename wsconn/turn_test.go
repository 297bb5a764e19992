package wsconn

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// readServerFrame reads one unfragmented server frame from br.
func readServerFrame(br *bufio.Reader) (ws.Header, []byte, error) {
	h, err := ws.ReadHeader(br)
	if err != nil {
		return h, nil, err
	}
	p := make([]byte, h.Length)
	_, err = io.ReadFull(br, p)
	return h, p, err
}

// pauseByFlood writes echo requests to nc, without reading: a little more
// than the server reads before c's queue is full and it stops reading, and
// little enough that the rest fits in the server's receive buffer. It
// returns once the server has paused and every byte written has reached its
// socket, so that a FIN sent now arrives.
func pauseByFlood(t *testing.T, nc net.Conn, c *Conn) {
	t.Helper()
	limit := c.srv.cfg.MaxQueueBytes
	msg := clientBinary(make([]byte, 1000))
	flood := bytes.Repeat(msg, limit*3/2/len(msg))
	require.NoError(t, nc.SetWriteDeadline(time.Now().Add(5*time.Second)))
	_, err := nc.Write(flood)
	require.NoError(t, err)
	rc, err := nc.(*net.TCPConn).SyscallConn()
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		c.mu.Lock()
		full := c.fullLocked()
		c.mu.Unlock()
		unsent := -1
		_ = rc.Control(func(fd uintptr) { unsent = unsentBytes(int(fd)) })
		return full && unsent == 0
	}, 5*time.Second, 10*time.Millisecond, "the server never paused, or the client's bytes never all reached it")
}

// TestPausedHalfCloseCostsNothing: a client whose queue is full, so that the
// server stops reading it, half-closes. Its connection must then cost no
// turns (EPOLLRDHUP stayed armed and fired at every re-arm: a core spun
// until the idle timeout, forever without one).
func TestPausedHalfCloseCostsNothing(t *testing.T) {
	addr, opened := serveRecording(t, Config{MaxQueueBytes: 64 << 10})
	nc, _, c := dialRecorded(t, addr, opened, true)
	pauseByFlood(t, nc, c)
	require.NoError(t, nc.(*net.TCPConn).CloseWrite())
	time.Sleep(100 * time.Millisecond) // the FIN arrives
	before := c.srv.turns.Load()
	time.Sleep(500 * time.Millisecond)
	turns := c.srv.turns.Load() - before
	assert.LessOrEqual(t, turns, uint64(5), "turns in 500 ms for one paused, half-closed connection")
}

// TestFlushResumesReading: a queue filled to the limit by a Batch (which
// does not write) paused the next turn, which then armed nothing; a Flush outside
// any turn drained it and nobody resumed reading: the client's messages were
// never read again. Whoever drains the queue, the message is read.
func TestFlushResumesReading(t *testing.T) {
	const limit = 64 << 10
	addr, opened := serveRecording(t, Config{MaxQueueBytes: limit})
	nc, br, c := dialRecorded(t, addr, opened, false)

	// Fill the queue to exactly its limit as a shard's pass does: a
	// Batch, no write yet. With no turn running (the upgrade's may still
	// be gathering its output: then the Batch leaves the flush to it).
	require.Eventually(t, func() bool { return c.sched.Load() == turnIdle }, 5*time.Second, time.Millisecond)
	frame := NewFrame(ws.OpBinary, make([]byte, limit/64-frameOverhead-4))
	require.Equal(t, limit/64, len(frame)+frameOverhead)
	const n = 64
	var b Batch
	for range n {
		require.NoError(t, b.Send(c, frame, 0))
	}
	require.Equal(t, []*Conn{c}, b.conns, "the connection, once, to flush")
	c.mu.Lock()
	require.True(t, c.fullLocked(), "the queue at its limit")
	c.mu.Unlock()
	// A message now gets a turn, which finds the queue full. (It used to
	// read nothing and arm neither reading nor writing, since nothing hit
	// EAGAIN; now it flushes the queue first.)
	turns := c.srv.turns.Load()
	_, err := nc.Write(clientText("hello"))
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		return c.srv.turns.Load() > turns && c.sched.Load() == turnIdle
	}, 5*time.Second, time.Millisecond, "the turn")

	// The shard's Flush, outside any turn, while the client reads.
	done := make(chan error, 1)
	go func() {
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		for range n {
			if _, _, err := readServerFrame(br); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	b.Flush()
	require.NoError(t, <-done, "the queued frames")

	// The message sent while paused is read and echoed.
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(3*time.Second)))
	_, p, err := readServerFrame(br)
	require.NoError(t, err, "the echo of the message sent while the queue was full")
	assert.Equal(t, "hello", string(p))
}

// TestTurnWritesOnce: 20,000 pipelined echo requests get their echoes in a
// writev per up to maxIovecs frames, not a write each (20,004 writes).
func TestTurnWritesOnce(t *testing.T) {
	const n = 20_000
	addr, opened := serveRecording(t, Config{})
	nc, br, c := dialRecorded(t, addr, opened, false)
	before := c.srv.writeCalls.Load()
	flood := bytes.Repeat(clientText("echo"), n)
	go func() {
		_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, _ = nc.Write(flood)
	}()
	require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	for i := range n {
		_, p, err := readServerFrame(br)
		require.NoError(t, err, "echo %d of %d", i, n)
		require.Equal(t, "echo", string(p))
	}
	writes := c.srv.writeCalls.Load() - before
	t.Logf("%d echoes in %d writes", n, writes)
	assert.LessOrEqual(t, writes, uint64(n/maxIovecs*2), "writes for %d pipelined echoes", n)
}

// TestPipelinedInputWaits: a client that sends many echo requests at once
// and does not read gets no more echoes queued than its limit allows. A
// turn handled every message of a read (up to 64 KiB of them) whatever the
// queue held; now it stops at the limit, sets the rest of the read aside,
// and handles it, in order, once the client reads.
func TestPipelinedInputWaits(t *testing.T) {
	const (
		limit = 16 << 10
		n     = 200
		size  = 1000
	)
	addr, opened := serveRecording(t, Config{MaxQueueBytes: limit})
	nc, br, c := dialRecorded(t, addr, opened, true)

	var burst []byte
	for i := range n {
		p := make([]byte, size)
		binary.BigEndian.PutUint32(p, uint32(i))
		burst = append(burst, clientBinary(p)...)
	}
	written := make(chan error, 1)
	go func() {
		_ = nc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		_, err := nc.Write(burst)
		written <- err
	}()
	echo := len(NewFrame(ws.OpBinary, make([]byte, size)))
	var in uint64
	maxCharge := 0
	require.Eventually(t, func() bool {
		frames, queued := queueState(c)
		maxCharge = max(maxCharge, queued+frames*frameOverhead)
		now := c.srv.bytesIn.Load()
		settled := now == in && now > 0
		in = now
		return settled
	}, 10*time.Second, 100*time.Millisecond, "the server never settled")
	assert.LessOrEqual(t, maxCharge, limit+echo+frameOverhead, "queue charge while the client did not read")

	require.NoError(t, nc.SetReadDeadline(time.Now().Add(10*time.Second)))
	for i := range n {
		_, p, err := readServerFrame(br)
		require.NoError(t, err, "echo %d of %d", i, n)
		require.Equal(t, uint32(i), binary.BigEndian.Uint32(p), "echo %d in order", i)
	}
	require.NoError(t, <-written)
}
