package bench

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	natsserver "github.com/nats-io/nats-server/v2/server"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/cluster"
)

// TestFanoutOverCluster: with --url naming two nodes of a cluster, the
// subscribers are spread over both, publishes go to each in turn, every
// subscriber gets every message, and the servers' figures are summed.
func TestFanoutOverCluster(t *testing.T) {
	ns, err := natsserver.NewServer(&natsserver.Options{Host: "127.0.0.1", Port: natsserver.RANDOM_PORT, JetStream: true, StoreDir: t.TempDir(), NoLog: true, NoSigs: true})
	require.NoError(t, err)
	go ns.Start()
	require.True(t, ns.ReadyForConnections(15*time.Second))
	t.Cleanup(func() { ns.Shutdown(); ns.WaitForShutdown() })
	node := func() *testServer {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		b, err := cluster.Dial(ctx, cluster.Config{URLs: []string{ns.ClientURL()}, Logger: slog.New(slog.DiscardHandler)})
		require.NoError(t, err)
		ts := startServer(t, broadcast.Config{Broker: b})
		t.Cleanup(b.Close) // after the server's cleanup: cleanups run last first
		return ts
	}
	a, b := node(), node()

	o := testOptions(t, a.url+","+b.url)
	o.ServerPID = -1 // both are this process: CPU time would count twice
	rep, err := Run(context.Background(), "fanout", o, os.Stderr, testLogger())
	require.NoError(t, err)
	x := rep.Fanout
	require.NotNil(t, x)
	assert.EqualValues(t, 300*5, x.Expected)
	assert.EqualValues(t, 300*5, x.Receipts)
	assert.Zero(t, x.Duplicates)
	sa, sb := a.hub.Stats(), b.hub.Stats()
	assert.EqualValues(t, 150*5, sa.Deliveries, "half the subscribers on each node")
	assert.EqualValues(t, 150*5, sb.Deliveries)
	assert.EqualValues(t, 5, sa.MessagesIn+sb.MessagesIn)
	assert.NotZero(t, sa.MessagesIn, "publishes through each node")
	assert.NotZero(t, sb.MessagesIn)

	o.ServerPID = os.Getpid()
	_, err = Run(context.Background(), "fanout", o, os.Stderr, testLogger())
	assert.ErrorContains(t, err, "one --url")
}
