package wsconn

import (
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"
)

// holdingEcho holds its connection at the message "hold", as a subscribe
// with since does, and releases it, with an empty SendReplay, delay later:
// a shard slow to take the op.
type holdingEcho struct {
	recordingEcho
	delay time.Duration
}

func (h holdingEcho) OnMessage(c *Conn, _ ws.OpCode, p []byte) {
	if string(p) != "hold" {
		return
	}
	c.Hold()
	time.AfterFunc(h.delay, func() { _ = c.SendReplay(nil) })
}

// TestHeldResetReleased: a peer resets its connection while the server
// holds it with nothing to write. The fd was armed for nothing, and
// EPOLLERR, which cannot be masked, brought turn after turn that read
// nothing and re-armed: about 35,000 a second until the hold ended (found
// in review).
func TestHeldResetReleased(t *testing.T) {
	addr, opened := serveRecordingWith(t, Config{}, func(r recordingEcho) Handler {
		return holdingEcho{r, 500 * time.Millisecond}
	})
	nc, _, c := dialRecorded(t, addr, opened, false)
	s := c.srv
	// One message that holds, and one that is set aside.
	_, err := nc.Write(append(clientBinary([]byte("hold")), clientBinary([]byte("b"))...))
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond)
	before := s.turns.Load()
	require.NoError(t, nc.(*net.TCPConn).SetLinger(0))
	require.NoError(t, nc.Close()) // a reset
	time.Sleep(300 * time.Millisecond)
	during := s.turns.Load() - before
	c.mu.Lock()
	state := c.state
	c.mu.Unlock()
	t.Logf("turns in the 300 ms after the reset, while held: %d", during)
	require.Less(t, during, uint64(100), "turns while held after the reset")
	require.Equal(t, stateClosed, state, "released while held")
}
