package broadcast_test

import (
	"bytes"
	"fmt"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// TestRateCloseAfterReplies: a client that sends, in one write, more
// messages than its rate allows gets the replies to those it was allowed,
// the rate_limited errors to those refused, and only then the 1008 close.
// The close was queued at once, while the replies and errors went through
// the client's shard: it overtook them, which were dropped, some or all.
func TestRateCloseAfterReplies(t *testing.T) {
	const burst = 5
	ts := startHub(t, broadcast.Config{MessageRate: 1, MessageBurst: burst}, wsconn.Config{})
	var msgs bytes.Buffer
	for i := range 3 * burst {
		f := ws.NewTextFrame(fmt.Appendf(nil, `{"type":"subscribe","topic":"t%d","id":%d}`, i, i+1))
		require.NoError(t, ws.WriteFrame(&msgs, ws.MaskFrame(f)))
	}
	for round := range 10 {
		c := mustDial(t, "gorilla", ts.addr, "").(*gorillaClient).c
		_, err := c.UnderlyingConn().Write(msgs.Bytes())
		require.NoError(t, err)
		require.NoError(t, c.SetReadDeadline(time.Now().Add(waitTimeout)))
		var got []string
		for {
			_, p, err := c.ReadMessage()
			if err != nil {
				require.Equal(t, int(broadcast.CloseRateLimit), closeCode(err), "round %d: %v", round, err)
				break
			}
			f, err := parseFrame(p)
			require.NoError(t, err)
			got = append(got, f.Type+" "+f.Code)
		}
		_ = c.Close()
		// burst allowed; then burst-1 refused with an error, the debt
		// reaching a whole burst at the next, which closes (or burst
		// refused, if the bucket refilled a fraction meanwhile).
		require.GreaterOrEqual(t, len(got), 2*burst-1, "round %d: %q", round, got)
		for i, g := range got {
			want := "subscribed "
			if i >= burst {
				want = "error " + broadcast.CodeRateLimited
			}
			require.Equal(t, want, g, "round %d: frame %d of %q", round, i, got)
		}
		require.LessOrEqual(t, len(got), 2*burst, "round %d: %q", round, got)
	}
}
