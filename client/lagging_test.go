package client_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/client"
	"github.com/fanout/fanout/wsconn"
)

// lagBroker is a cluster broker whose node has seen the topic's messages up
// to its backlog; the test hands it the later ones (deliver), as NATS does
// a moment after another node has already fanned them out.
// lagBroker stands in for a cluster node's broker: Watch hands over the
// backlog it holds, and deliver feeds a message to the watching hub, as a
// node's JetStream consumer does.
type lagBroker struct {
	mu      sync.Mutex
	backlog []broadcast.BrokerMessage
	d       func(broadcast.BrokerMessage)
}

func (b *lagBroker) Publish(context.Context, string, []byte) (uint64, error) {
	return 0, errors.New("not in this test")
}

func (b *lagBroker) Watch(_ context.Context, _ string, d func(broadcast.BrokerMessage)) (broadcast.Watch, []broadcast.BrokerMessage, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.d = d
	return stopNop{}, slices.Clone(b.backlog), nil
}

func (b *lagBroker) Connected() bool { return true }

func (b *lagBroker) deliver(seq uint64) {
	b.mu.Lock()
	d := b.d
	b.mu.Unlock()
	d(broadcast.BrokerMessage{Seq: seq, Epoch: "e1", Data: fmt.Appendf(nil, "%d", seq)})
}

type stopNop struct{}

func (stopNop) Stop() {}

// TestReconnectToLaggingNodeNoDuplicates: the client saw seqs 1..6 of epoch
// e1 from one node, and reconnects (same epoch) to a node whose watch has
// only reached seq 4 so far. That node answers recovered:false, seq 4, and
// then fans out 5, 6, 7 as they reach it. The client already delivered 5
// and 6: each seq must reach the handler once.
// TestReconnectToLaggingNodeNoDuplicates: the client has 1..6 from one
// node and reconnects to another of the same cluster (same epoch) whose
// watch has only reached 4. Its reply says 4, not recovered, and it then
// sends 5, 6 and 7: the client delivered 5 and 6 twice, for it took the
// reply's seq as the last delivered. Found by a helper's review.
func TestReconnectToLaggingNodeNoDuplicates(t *testing.T) {
	nodeA := &lagBroker{backlog: []broadcast.BrokerMessage{{Seq: 0, Epoch: "e1"}}}
	s := startServer(t, broadcast.Config{Broker: nodeA}, wsconn.Config{})
	r := newRecorder()
	c := dial(t, s.url(), &client.Options{OnEvent: r.event})
	require.NoError(t, c.Subscribe("t", r.handler))
	r.waitFor(t, "subscribed", func() bool { return r.countLocked(client.Subscribed, "t") == 1 })
	for seq := uint64(1); seq <= 6; seq++ {
		nodeA.deliver(seq)
	}
	r.waitFor(t, "1..6", func() bool { return len(r.msgs["t"]) == 6 })

	// The reconnect lands on node B, same cluster, same epoch, a little
	// behind: it has 1..4.
	nodeB := &lagBroker{backlog: []broadcast.BrokerMessage{{Seq: 0, Epoch: "e1"}}}
	for seq := uint64(1); seq <= 4; seq++ {
		nodeB.backlog = append(nodeB.backlog, broadcast.BrokerMessage{Seq: seq, Epoch: "e1", Data: fmt.Appendf(nil, "%d", seq)})
	}
	s.stop(t)
	s.hcfg.Broker = nodeB
	s.start(t)
	r.waitFor(t, "resubscribed", func() bool { return r.countLocked(client.Subscribed, "t") == 2 })
	for seq := uint64(5); seq <= 7; seq++ {
		nodeB.deliver(seq)
	}
	r.waitFor(t, "seq 7", func() bool { m := r.msgs["t"]; return len(m) > 0 && m[len(m)-1].Seq == 7 })

	r.mu.Lock()
	defer r.mu.Unlock()
	t.Logf("events: %v", r.events)
	assert.Equal(t, want(7), r.seqsLocked("t"), "each seq once, in order")
	for _, e := range r.events {
		assert.NotEqual(t, client.Lost, e.Kind, "nothing was lost: %v", e)
	}
	var last client.Event
	for _, e := range r.events {
		if e.Kind == client.Subscribed {
			last = e
		}
	}
	assert.Equal(t, "subscribed t at 6@e1 recovered=false", last.String(), "messages follow the last seq delivered")
}
