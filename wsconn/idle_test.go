package wsconn_test

import (
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"

	"github.com/fanout/fanout/wsconn"
)

// TestIdleNeverEarly: a connection is closed as idle no sooner than
// IdleTimeout after its last input, whenever between two sweeps that input
// came. Input is stamped with the last sweep's tick, and closes came up to a
// sweep interval early (2.85 s of silence at --idle-timeout 3s).
func TestIdleNeverEarly(t *testing.T) {
	const idle = 600 * time.Millisecond // sweeps every 120 ms
	_, addr := startServer(t, wsconn.Config{IdleTimeout: idle})
	var wg sync.WaitGroup
	for i := range 6 {
		c := dialWS(t, addr)
		wg.Go(func() {
			// Inputs at various points between two sweeps.
			time.Sleep(time.Duration(i) * 23 * time.Millisecond)
			last := time.Now() // before the write: never after the server reads it
			if !assert.NoError(t, c.writeFrames([][]byte{maskedFrame(ws.OpText, []byte("last"))}, false)) {
				return
			}
			_, code := c.readUntilClose(t)
			silence := time.Since(last)
			assert.Equal(t, 1001, code)
			// Up to a sweep interval early it was; a sweep that runs late
			// (a busy machine) may still make it a little early.
			assert.GreaterOrEqual(t, silence, idle-20*time.Millisecond, "client %d closed after %v of silence", i, silence)
		})
	}
	wg.Wait()
}
