package wsconn

import (
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// drainRecorder is Echo that is a Drainer: it counts OnDrain calls.
type drainRecorder struct {
	recordingEcho
	drained chan *Conn
}

func (d drainRecorder) OnDrain(c *Conn) { d.drained <- c }

// TestNotifyDrain: OnDrain comes once per NotifyDrain, only once everything
// queued before it is written: at once for an empty queue, and for a full
// one when the peer has read it all.
func TestNotifyDrain(t *testing.T) {
	drained := make(chan *Conn, 4)
	addr, opened := serveRecordingWith(t, Config{MaxQueueBytes: 64 << 10}, func(r recordingEcho) Handler {
		return drainRecorder{r, drained}
	})
	nc, br, c := dialRecorded(t, addr, opened, true)

	c.NotifyDrain()
	select {
	case got := <-drained:
		assert.Same(t, c, got)
	case <-time.After(5 * time.Second):
		t.Fatal("no OnDrain for an empty queue")
	}

	// Fill the queue past what the sockets take, then ask.
	frame := NewFrame(ws.OpBinary, make([]byte, 4000))
	n := 0
	for ; n < 1000; n++ {
		if err := c.Send(frame, 0); err != nil {
			require.ErrorIs(t, err, ErrQueueFull)
			break
		}
	}
	require.Positive(t, c.QueuedBytes(), "frames queued")
	c.NotifyDrain()
	select {
	case <-drained:
		t.Fatal("OnDrain before the queue was written")
	case <-time.After(200 * time.Millisecond):
	}

	require.NoError(t, nc.SetReadDeadline(time.Now().Add(5*time.Second)))
	for i := range n {
		_, _, err := readServerFrame(br)
		require.NoError(t, err, "frame %d of %d", i, n)
	}
	select {
	case got := <-drained:
		assert.Same(t, c, got)
	case <-time.After(5 * time.Second):
		t.Fatal("no OnDrain once the queue was written")
	}
	select {
	case <-drained:
		t.Fatal("a second OnDrain for one NotifyDrain")
	case <-time.After(200 * time.Millisecond):
	}
}
