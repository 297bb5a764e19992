package broadcast_test

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// stuckBroker is a broker whose publishes wait until released: NATS that
// does not answer.
type stuckBroker struct{ entered, release chan struct{} }

func (b *stuckBroker) Publish(ctx context.Context, _ string, _ []byte) (uint64, error) {
	close(b.entered)
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return 0, errors.New("no answer")
}

func (b *stuckBroker) Watch(context.Context, string, func(broadcast.BrokerMessage)) (broadcast.Watch, []broadcast.BrokerMessage, error) {
	return nil, nil, errors.New("no watch")
}

func (b *stuckBroker) Connected() bool { return true }

// TestCloseDoesNotWaitForBroker: a publish waiting for the cluster's broker
// holds no lock of the hub's, so Close (and all that waits behind it) does
// not wait for NATS. Three seconds is the deadline of a hang.
func TestCloseDoesNotWaitForBroker(t *testing.T) {
	b := &stuckBroker{entered: make(chan struct{}), release: make(chan struct{})}
	defer close(b.release)
	hub := broadcast.New(broadcast.Config{Broker: b, Logger: slog.New(slog.DiscardHandler)})
	published := make(chan error, 1)
	go func() {
		_, err := hub.Publish("t", []byte(`1`))
		published <- err
	}()
	<-b.entered
	closed := make(chan struct{})
	go func() {
		hub.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("Close waits for a publish the broker has not answered")
	}
	b.release <- struct{}{}
	assert.ErrorIs(t, <-published, broadcast.ErrUnavailable)
}

// gatedBroker is a broker whose watch of a topic named in gates waits for
// that gate: NATS that has not answered yet. It answers with backlog, or
// with fail's error if fail holds the topic.
type gatedBroker struct {
	mu       sync.Mutex
	gates    map[string]chan struct{}
	entered  chan string
	fail     map[string]error
	backlog  []broadcast.BrokerMessage
	delivers map[string]func(broadcast.BrokerMessage)
	// none holds the topics whose next watch starts with no error and no
	// watch: a broker that says it started one but hands back none.
	none map[string]bool
}

// Publish waits for the gate named "publish " and the topic, if there is
// one, and stores nothing: it answers seq 7.
func (b *gatedBroker) Publish(ctx context.Context, topic string, _ []byte) (uint64, error) {
	b.mu.Lock()
	gate := b.gates["publish "+topic]
	b.mu.Unlock()
	if gate != nil {
		b.entered <- "publish " + topic
		select {
		case <-gate:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
	return 7, nil
}

func (b *gatedBroker) Watch(ctx context.Context, topic string, deliver func(broadcast.BrokerMessage)) (broadcast.Watch, []broadcast.BrokerMessage, error) {
	b.mu.Lock()
	gate := b.gates[topic]
	b.mu.Unlock()
	if gate != nil {
		b.entered <- topic
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if err := b.fail[topic]; err != nil {
		return nil, nil, err
	}
	if b.none[topic] {
		delete(b.none, topic)
		return nil, nil, nil
	}
	b.delivers[topic] = deliver
	return nopWatch{}, slices.Clone(b.backlog), nil
}

func (b *gatedBroker) Connected() bool { return true }

func (b *gatedBroker) deliver(topic string, m broadcast.BrokerMessage) {
	b.mu.Lock()
	d := b.delivers[topic]
	b.mu.Unlock()
	d(m)
}

type nopWatch struct{}

func (nopWatch) Stop() {}

// TestSubscribeDoesNotWaitForBroker: a first subscribe to a topic starts
// its watch without holding a worker, the topic's lock or the hub's gate
// while the broker answers. With two workers, two subscribes waiting for
// NATS used to hold both, and a third client was not even upgraded. The
// waiting subscribers are answered, with the broker's history, once the
// watch starts; one whose watch fails is closed 1013 to come back with
// since; one that left meanwhile is not subscribed.
func TestSubscribeDoesNotWaitForBroker(t *testing.T) {
	b := &gatedBroker{
		gates:    map[string]chan struct{}{"slow": make(chan struct{}), "bad": make(chan struct{}), "gone": make(chan struct{})},
		entered:  make(chan string, 8),
		fail:     map[string]error{"bad": errors.New("no answer")},
		backlog:  []broadcast.BrokerMessage{{Seq: 3, Epoch: "e1", Data: []byte(`3`)}, {Seq: 4, Epoch: "e1", Data: []byte(`4`)}},
		delivers: map[string]func(broadcast.BrokerMessage){},
	}
	ts := startHub(t, broadcast.Config{Broker: b}, wsconn.Config{Workers: 2})
	entered := func(topic string) {
		t.Helper()
		select {
		case got := <-b.entered:
			require.Equal(t, topic, got)
		case <-time.After(waitTimeout):
			t.Fatalf("no watch of %s", topic)
		}
	}

	a := mustDial(t, "gorilla", ts.addr, "")
	mustWrite(t, a, subscribeMsg("slow"))
	entered("slow")
	c := mustDial(t, "gorilla", ts.addr, "")
	mustWrite(t, c, subscribeMsg("slow"))
	d := mustDial(t, "gorilla", ts.addr, "")
	mustWrite(t, d, subscribeMsg("bad"))
	entered("bad")
	e := mustDial(t, "gorilla", ts.addr, "")
	mustWrite(t, e, subscribeMsg("gone"))
	entered("gone")

	// Meanwhile another client is served.
	servedWhileWaiting(t, ts)

	// e leaves with a reset: a held connection reads nothing, so a FIN
	// would be noticed only once the watch has answered it.
	require.Eventually(t, func() bool { return ts.hub.Stats().Clients == 4 }, waitTimeout, time.Millisecond, "the fast client gone")
	require.NoError(t, e.(*gorillaClient).c.UnderlyingConn().(*net.TCPConn).SetLinger(0))
	e.Close()
	require.Eventually(t, func() bool { return ts.hub.Stats().Clients == 3 }, waitTimeout, time.Millisecond, "e gone")
	close(b.gates["gone"])
	close(b.gates["bad"])
	_, err := d.ReadText(waitTimeout)
	assert.Equal(t, int(broadcast.CloseClusterUnavailable), closeCode(err), "the subscribe to bad: %v", err)

	close(b.gates["slow"])
	for _, cl := range []wsClient{a, c} {
		f := mustReadSubscribed(t, cl, "slow")
		assert.Equal(t, uint64(4), f.Seq)
		assert.Equal(t, "e1", f.Epoch)
	}
	b.deliver("slow", broadcast.BrokerMessage{Seq: 5, Epoch: "e1", Data: []byte(`5`)})
	for _, cl := range []wsClient{a, c} {
		mustReadMessage(t, cl, "slow", 5)
	}
	// a and c on slow, the fast client gone, d closed, e gone: gone has
	// no subscriber, though its watch started after e left.
	require.Eventually(t, func() bool { return ts.hub.Stats().Subscriptions == 2 }, waitTimeout, time.Millisecond,
		"subscriptions: %+v", ts.hub.Stats())
	// The counts above drop with e's leave either way; what a late
	// subscribe of e would leave is an entry in its shard's list.
	ts.hub.Close()
	assert.Zero(t, broadcast.Listed(ts.hub, "gone"), "the shards list e on gone")
	assert.Equal(t, 2, broadcast.Listed(ts.hub, "slow"))
}

// TestWatchStartedWithoutWatch: a broker that reports a watch of a topic
// started but hands back none does not leave the topic starting for good:
// its subscriber is closed 1013 to come back, and the next subscribe to it
// tries again and is answered.
func TestWatchStartedWithoutWatch(t *testing.T) {
	b := &gatedBroker{
		gates:    map[string]chan struct{}{},
		entered:  make(chan string, 8),
		delivers: map[string]func(broadcast.BrokerMessage){},
		none:     map[string]bool{"ghost": true},
		backlog:  []broadcast.BrokerMessage{{Seq: 3, Epoch: "e1", Data: []byte(`3`)}},
	}
	ts := startHub(t, broadcast.Config{Broker: b}, wsconn.Config{})
	first := mustDial(t, "gorilla", ts.addr, "")
	mustWrite(t, first, subscribeMsg("ghost"))
	_, err := first.ReadText(waitTimeout)
	assert.Equal(t, int(broadcast.CloseClusterUnavailable), closeCode(err), "%v", err)

	again := mustDial(t, "gorilla", ts.addr, "")
	mustWrite(t, again, subscribeMsg("ghost"))
	f := mustReadSubscribed(t, again, "ghost")
	assert.Equal(t, uint64(3), f.Seq)
}

// servedWhileWaiting fails t unless a new client is upgraded, and its
// subscribe to a topic whose watch starts at once answered, within 3 s.
func servedWhileWaiting(t *testing.T, ts *testServer) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		f, _, err := dial("gorilla", ts.addr, "")
		if err == nil {
			defer f.Close()
			if err = f.WriteText([]byte(subscribeMsg("fast"))); err == nil {
				_, err = f.ReadText(waitTimeout)
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(3 * time.Second):
		t.Fatal("a client is not served while others wait for the broker")
	}
}

// TestPublishDoesNotHoldWorker: a publish over a WebSocket waits for the
// broker on a goroutine of its own, not on a worker: two publishes waiting
// for NATS used to hold both workers, and no other client was served. The
// publishing connection handles its next message only once the publish is
// answered, so its replies come in order.
func TestPublishDoesNotHoldWorker(t *testing.T) {
	b := &gatedBroker{
		gates:    map[string]chan struct{}{"publish p": make(chan struct{})},
		entered:  make(chan string, 8),
		delivers: map[string]func(broadcast.BrokerMessage){},
	}
	ts := startHub(t, broadcast.Config{Broker: b}, wsconn.Config{Workers: 2})
	var pubs []wsClient
	for range 2 {
		c := mustDial(t, "gorilla", ts.addr, "")
		mustWrite(t, c, publishMsg("p", "1"))
		select {
		case got := <-b.entered:
			require.Equal(t, "publish p", got)
		case <-time.After(waitTimeout):
			t.Fatal("no publish reached the broker")
		}
		pubs = append(pubs, c)
	}
	// Behind the waiting publish: answered after it.
	mustWrite(t, pubs[0], `{"type":"unsubscribe","topic":"x"}`)

	servedWhileWaiting(t, ts)

	close(b.gates["publish p"])
	for _, c := range pubs {
		f := mustRead(t, c)
		assert.Equal(t, "published", f.Type, "%s", f)
		assert.Equal(t, uint64(7), f.Seq)
	}
	mustReadError(t, pubs[0], broadcast.CodeNotSubscribed)
}

// TestWatchStartCutByClose: a hub closed while a topic's watch starts ends
// the wait at once (the broker's round trip is cancelled), and the client
// that waited is closed 1001, going away, not told to retry the cluster.
func TestWatchStartCutByClose(t *testing.T) {
	b := &gatedBroker{
		gates:    map[string]chan struct{}{"slow": make(chan struct{})},
		entered:  make(chan string, 1),
		delivers: map[string]func(broadcast.BrokerMessage){},
	}
	ts := startHub(t, broadcast.Config{Broker: b}, wsconn.Config{})
	c := mustDial(t, "gorilla", ts.addr, "")
	mustWrite(t, c, subscribeMsg("slow"))
	select {
	case <-b.entered:
	case <-time.After(waitTimeout):
		t.Fatal("no watch of slow")
	}
	ts.hub.Close()
	_, err := c.ReadText(3 * time.Second)
	assert.Equal(t, 1001, closeCode(err), "%v", err)
}

// TestPublishedAfterOwnMessage: in a cluster, a WebSocket publish by a
// subscriber of the topic is answered once the node's watch has delivered
// the message, so that the publisher gets the message first, as on one
// node. The reply went as soon as NATS acked the publish, before the
// message came back through the watch (5-17 of 150 replies came first, in
// a helper's run against NATS). A publisher not subscribed is answered at
// the ack.
func TestPublishedAfterOwnMessage(t *testing.T) {
	b := &gatedBroker{
		entered:  make(chan string, 8),
		backlog:  []broadcast.BrokerMessage{{Seq: 6, Epoch: "e1", Data: []byte(`6`)}},
		delivers: map[string]func(broadcast.BrokerMessage){},
	}
	ts := startHub(t, broadcast.Config{Broker: b}, wsconn.Config{})
	c := mustDial(t, "gorilla", ts.addr, "topics=p")
	mustReadSubscribed(t, c, "p")
	readSoon := func(c wsClient) frame {
		t.Helper()
		p, err := c.ReadText(2 * time.Second) // well under the wait's 10 s
		require.NoError(t, err)
		f, err := parseFrame(p)
		require.NoError(t, err)
		return f
	}

	// Not subscribed: answered at the ack (the broker's seq 7, which the
	// watch does not deliver yet).
	d := mustDial(t, "gorilla", ts.addr, "")
	mustWrite(t, d, publishMsg("p", "7"))
	f := readSoon(d)
	assert.Equal(t, "published", f.Type, "%s", f)

	// Subscribed: the message comes back a while after the ack; a reply
	// sent at the ack would be read first.
	mustWrite(t, c, publishMsg("p", "7"))
	time.Sleep(200 * time.Millisecond)
	b.deliver("p", broadcast.BrokerMessage{Seq: 7, Epoch: "e1", Data: []byte(`7`)})
	f = readSoon(c)
	require.True(t, f.isMessage(), "the message first: %s", f)
	assert.Equal(t, uint64(7), f.Seq)
	f = readSoon(c)
	assert.Equal(t, "published", f.Type, "%s", f)
	assert.Equal(t, uint64(7), f.Seq)
}

// TestPublishWaitGivenUp: a publish whose reply stops waiting for the watch
// (here, the hub closes; or its 10 s pass) takes its wait off the watch's
// list. It stayed there until the watch delivered its seq, and a watch that
// stalled gathered one for every publish.
func TestPublishWaitGivenUp(t *testing.T) {
	b := &gatedBroker{
		entered:  make(chan string, 8),
		backlog:  []broadcast.BrokerMessage{{Seq: 6, Epoch: "e1", Data: []byte(`6`)}},
		delivers: map[string]func(broadcast.BrokerMessage){},
	}
	ts := startHub(t, broadcast.Config{Broker: b}, wsconn.Config{})
	c := mustDial(t, "gorilla", ts.addr, "topics=p")
	mustReadSubscribed(t, c, "p")
	mustWrite(t, c, publishMsg("p", "7")) // seq 7, which the watch never delivers
	require.Eventually(t, func() bool { return broadcast.PublishWaits(ts.hub, "p") == 1 }, waitTimeout, time.Millisecond)
	ts.hub.Close()
	require.Eventually(t, func() bool { return broadcast.PublishWaits(ts.hub, "p") == 0 }, waitTimeout, time.Millisecond,
		"the wait given up is gone")
}
