package cluster_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/client"
	"github.com/fanout/fanout/cluster"
	"github.com/fanout/fanout/wsconn"
)

// waitTimeout bounds every wait: a deadline for a hang, never a latency
// assertion.
const waitTimeout = 15 * time.Second

// natsServer is a NATS server with JetStream on loopback: embedded
// (nats-server/v2), or, with $FANOUT_TEST_NATS_SERVER naming a nats-server
// binary (as Debian's package installs it), that binary as a child process.
type natsServer struct {
	t    *testing.T
	port int
	dir  string // the JetStream store, kept across restarts

	embedded *server.Server
	cmd      *exec.Cmd
}

// startNATS runs a NATS server until the test ends.
func startNATS(t *testing.T) *natsServer {
	t.Helper()
	ns := &natsServer{t: t, dir: t.TempDir()}
	ns.start()
	t.Cleanup(ns.stop)
	return ns
}

func (ns *natsServer) url() string { return fmt.Sprintf("nats://127.0.0.1:%d", ns.port) }

func (ns *natsServer) addr() string { return fmt.Sprintf("127.0.0.1:%d", ns.port) }

// start starts the server, on the port it had before if it ran before.
func (ns *natsServer) start() {
	t := ns.t
	t.Helper()
	bin := os.Getenv("FANOUT_TEST_NATS_SERVER")
	if bin == "" {
		port := server.RANDOM_PORT
		if ns.port != 0 {
			port = ns.port
		}
		s, err := server.NewServer(&server.Options{
			Host: "127.0.0.1", Port: port,
			JetStream: true, StoreDir: ns.dir,
			NoLog: true, NoSigs: true,
		})
		require.NoError(t, err)
		go s.Start()
		require.True(t, s.ReadyForConnections(waitTimeout), "NATS did not start")
		ns.embedded = s
		ns.port = s.Addr().(*net.TCPAddr).Port
		return
	}
	if ns.port == 0 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		ns.port = ln.Addr().(*net.TCPAddr).Port
		require.NoError(t, ln.Close())
	}
	ns.cmd = exec.Command(bin, "-a", "127.0.0.1", "-p", strconv.Itoa(ns.port), "-js", "-sd", ns.dir)
	require.NoError(t, ns.cmd.Start())
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", ns.addr())
		if err == nil {
			_ = c.Close()
		}
		return err == nil
	}, waitTimeout, 10*time.Millisecond, "%s did not start", bin)
}

// stop stops the server; start starts it again on its store.
func (ns *natsServer) stop() {
	if ns.embedded != nil {
		ns.embedded.Shutdown()
		ns.embedded.WaitForShutdown()
		ns.embedded = nil
	}
	if ns.cmd != nil {
		_ = ns.cmd.Process.Kill()
		_ = ns.cmd.Wait()
		ns.cmd = nil
	}
}

// node is one fanout node: a hub on a cluster.Broker and a wsconn.Server on
// loopback, wired as "fanout serve --nats" wires them.
type node struct {
	hub    *broadcast.Hub
	broker *cluster.Broker
	addr   string
}

// startNode starts a node on NATS at natsURL, whose history is 100
// messages a topic, or, with historyAge, lasts that long.
func startNode(t *testing.T, natsURL string, historyAge ...time.Duration) *node {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	age := 5 * time.Minute
	if len(historyAge) > 0 {
		age = historyAge[0]
	}
	broker, err := cluster.Dial(ctx, cluster.Config{URLs: []string{natsURL}, HistorySize: 100, HistoryAge: age, Logger: quiet})
	require.NoError(t, err)
	hub := broadcast.New(broadcast.Config{Broker: broker, HistorySize: 100, HistoryAge: age, MessageRate: -1, Logger: quiet})
	mux := http.NewServeMux()
	mux.Handle("/publish", hub.PublishHandler())
	srv, err := wsconn.NewServer(wsconn.Config{
		Upgrade: func(r *wsconn.Request) (wsconn.Handler, error) { return hub.Upgrade(r) },
		HTTP:    mux,
		Logger:  quiet,
	})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		hub.Close()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx))
		<-served
		broker.Close()
	})
	return &node{hub: hub, broker: broker, addr: ln.Addr().String()}
}

var httpClient = &http.Client{Timeout: waitTimeout}

// post publishes data to topic with POST /publish; it returns the status
// and the seq of a 202.
func (n *node) post(t *testing.T, topic, data string) (int, uint64) {
	status, seq, _ := n.postBody(t, topic, data)
	return status, seq
}

// postBody is post that returns the body as well.
func (n *node) postBody(t *testing.T, topic, data string) (int, uint64, string) {
	resp, err := httpClient.Post("http://"+n.addr+"/publish?topic="+topic, "application/json", bytes.NewBufferString(data))
	if !assert.NoError(t, err) {
		return 0, 0, ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var r struct{ Seq uint64 }
	if resp.StatusCode == http.StatusAccepted {
		assert.NoError(t, json.Unmarshal(body, &r), "%s", body)
	}
	return resp.StatusCode, r.Seq, string(body)
}

// frame is any server message of the wire protocol.
type frame struct {
	Type      string          `json:"type"`
	Topic     string          `json:"topic"`
	Seq       uint64          `json:"seq"`
	Epoch     string          `json:"epoch"`
	Recovered bool            `json:"recovered"`
	Code      string          `json:"code"`
	Data      json.RawMessage `json:"data"`
	From      uint64          `json:"from"` // dropped
	To        uint64          `json:"to"`
}

type subscriber struct {
	t    *testing.T
	conn *gorilla.Conn
	next uint64 // the seq readSeqs expects next
}

// subscribe connects to n's /ws with query and returns the client and the
// subscribed reply of topic.
func (n *node) subscribe(t *testing.T, topic, query string) (*subscriber, frame) {
	t.Helper()
	c, _, err := gorilla.DefaultDialer.Dial("ws://"+n.addr+"/ws?"+query, nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	s := &subscriber{t: t, conn: c}
	reply := s.read()
	require.Equal(t, "subscribed", reply.Type, "%+v", reply)
	require.Equal(t, topic, reply.Topic)
	return s, reply
}

func (s *subscriber) read() frame {
	s.t.Helper()
	require.NoError(s.t, s.conn.SetReadDeadline(time.Now().Add(waitTimeout)))
	_, p, err := s.conn.ReadMessage()
	require.NoError(s.t, err)
	var f frame
	require.NoError(s.t, json.Unmarshal(p, &f), "%s", p)
	return f
}

// TestConcurrentPublishesThroughTwoNodes: publishers on both nodes at once
// to one topic, and every subscriber on either node gets the same messages
// with the same gapless seqs, which are those the publishes were answered
// with.
func TestConcurrentPublishesThroughTwoNodes(t *testing.T) {
	ns := startNATS(t)
	a, b := startNode(t, ns.url()), startNode(t, ns.url())
	const topic = "room.1" // a dot: one subject token all the same
	var subs []*subscriber
	var epoch string
	for i := range 6 {
		n := a
		if i%2 == 1 {
			n = b
		}
		s, reply := n.subscribe(t, topic, "topics="+topic)
		assert.Zero(t, reply.Seq)
		// A topic with no message has an epoch already, the same on
		// every node, which its first message continues.
		require.NotEmpty(t, reply.Epoch)
		if epoch == "" {
			epoch = reply.Epoch
		}
		assert.Equal(t, epoch, reply.Epoch, "subscriber %d", i)
		subs = append(subs, s)
	}

	const publishers, each = 4, 40
	var mu sync.Mutex
	bySeq := map[uint64]string{}
	var wg sync.WaitGroup
	for p := range publishers {
		n := a
		if p%2 == 1 {
			n = b
		}
		wg.Go(func() {
			for k := range each {
				data := fmt.Sprintf(`{"p":%d,"k":%d}`, p, k)
				status, seq := n.post(t, topic, data)
				if !assert.Equal(t, http.StatusAccepted, status) {
					return
				}
				mu.Lock()
				assert.NotContains(t, bySeq, seq, "seq given twice")
				bySeq[seq] = data
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	require.Len(t, bySeq, publishers*each)
	for seq := uint64(1); seq <= publishers*each; seq++ {
		require.Contains(t, bySeq, seq, "seqs answered have a gap")
	}
	for i, s := range subs {
		for seq := uint64(1); seq <= publishers*each; seq++ {
			f := s.read()
			require.Equal(t, seq, f.Seq, "subscriber %d: %+v", i, f)
			require.JSONEq(t, bySeq[seq], string(f.Data), "subscriber %d, seq %d", i, seq)
		}
	}

	// A subscriber who comes later, on either node, starts at the latest
	// seq in the same epoch and then gets the next message.
	last := uint64(publishers * each)
	for _, n := range []*node{a, b} {
		s, reply := n.subscribe(t, topic, "topics="+topic)
		assert.Equal(t, last, reply.Seq)
		assert.Equal(t, epoch, reply.Epoch)
		status, seq := n.post(t, topic, `"next"`)
		require.Equal(t, http.StatusAccepted, status)
		f := s.read()
		assert.Equal(t, seq, f.Seq)
		assert.Equal(t, reply.Seq+1, f.Seq)
		last = f.Seq
	}
}

// TestPublishWithoutNATS: a node whose NATS is gone refuses publishes with
// 503 at once, and /stats says NATS is not connected.
func TestPublishWithoutNATS(t *testing.T) {
	ns := startNATS(t)
	a := startNode(t, ns.url())
	status, seq := a.post(t, "news", `{"n":1}`)
	require.Equal(t, http.StatusAccepted, status)
	require.Equal(t, uint64(1), seq)
	require.NotNil(t, a.hub.Stats().NATSConnected)
	assert.True(t, *a.hub.Stats().NATSConnected)

	s, _ := a.subscribe(t, "news", "topics=news")
	ns.stop()
	require.Eventually(t, func() bool { return !a.broker.Connected() }, waitTimeout, 10*time.Millisecond)
	status, _, body := a.postBody(t, "news", `{"n":2}`)
	assert.Equal(t, http.StatusServiceUnavailable, status)
	assert.Contains(t, body, "not published")
	assert.False(t, *a.hub.Stats().NATSConnected)

	// A subscribe that needs NATS is refused at once too, not after
	// seconds on one of the node's few workers, where it would hold up
	// every connection's turn: three seconds is the deadline for a hang.
	require.NoError(t, s.conn.SetWriteDeadline(time.Now().Add(waitTimeout)))
	for i := range 8 {
		require.NoError(t, s.conn.WriteJSON(map[string]any{"type": "subscribe", "topic": fmt.Sprintf("new%d", i)}))
	}
	require.NoError(t, s.conn.SetReadDeadline(time.Now().Add(3*time.Second)))
	for range 8 {
		_, p, err := s.conn.ReadMessage()
		require.NoError(t, err, "a subscribe without NATS was not answered")
		var f frame
		require.NoError(t, json.Unmarshal(p, &f))
		assert.Equal(t, "unavailable", f.Code, "%s", p)
	}
}

// TestConsumersGoWithSubscribers: once a topic has no subscriber on a
// node, the node's JetStream consumer of it is deleted, not left on the
// server.
func TestConsumersGoWithSubscribers(t *testing.T) {
	ns := startNATS(t)
	a := startNode(t, ns.url(), 2*time.Second) // swept every half second
	nc, err := nats.Connect(ns.url())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	consumers := func() int {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		info, err := js.Stream(ctx, "FANOUT")
		require.NoError(t, err)
		return info.CachedInfo().State.Consumers
	}
	var subs []*subscriber
	for i := range 5 {
		topic := fmt.Sprintf("t%d", i)
		s, _ := a.subscribe(t, topic, "topics="+topic)
		subs = append(subs, s)
	}
	assert.Equal(t, 5, consumers())
	for _, s := range subs {
		require.NoError(t, s.conn.Close())
	}
	require.Eventually(t, func() bool { return a.hub.Stats().Topics == 0 }, waitTimeout, 50*time.Millisecond)
	require.Eventually(t, func() bool { return consumers() == 0 }, 5*time.Second, 50*time.Millisecond,
		"consumers left on the server")
}

// TestRecoveryOnAnotherNode: a client that read up to seq 5 on one node
// moves to another, which never had subscribers of the topic, with
// since=TOPIC:5@EPOCH, and gets exactly what it missed from the history the
// cluster keeps, then what follows; a since older than that history, or of
// another epoch, is told recovered:false and replays nothing.
func TestRecoveryOnAnotherNode(t *testing.T) {
	ns := startNATS(t)
	a, b := startNode(t, ns.url()), startNode(t, ns.url())
	const topic = "feed"
	s, reply := a.subscribe(t, topic, "topics="+topic)
	epoch := reply.Epoch
	for k := 1; k <= 10; k++ {
		status, seq := a.post(t, topic, fmt.Sprintf(`{"k":%d}`, k))
		require.Equal(t, http.StatusAccepted, status)
		require.Equal(t, uint64(k), seq)
	}
	for k := 1; k <= 5; k++ {
		require.Equal(t, uint64(k), s.read().Seq)
	}
	require.NoError(t, s.conn.Close()) // a's node is gone, say

	moved, reply := b.subscribe(t, topic, "topics="+topic+"&since="+topic+":5@"+epoch)
	assert.True(t, reply.Recovered, "%+v", reply)
	assert.Equal(t, uint64(5), reply.Seq)
	assert.Equal(t, epoch, reply.Epoch)
	for k := 6; k <= 10; k++ {
		f := moved.read()
		require.Equal(t, uint64(k), f.Seq)
		require.JSONEq(t, fmt.Sprintf(`{"k":%d}`, k), string(f.Data))
	}
	status, seq := a.post(t, topic, `{"k":11}`)
	require.Equal(t, http.StatusAccepted, status)
	assert.Equal(t, seq, moved.read().Seq)

	// The cluster keeps 100 messages a topic: since=5 is too old on a
	// node that starts watching now, and so is another epoch's seq.
	for k := 12; k <= 120; k++ {
		status, _ := b.post(t, topic, fmt.Sprintf(`{"k":%d}`, k))
		require.Equal(t, http.StatusAccepted, status)
	}
	c := startNode(t, ns.url())
	_, reply = c.subscribe(t, topic, "topics="+topic+"&since="+topic+":5@"+epoch)
	assert.False(t, reply.Recovered, "%+v", reply)
	assert.Equal(t, uint64(120), reply.Seq)
	_, reply = c.subscribe(t, topic, "topics="+topic+"&since="+topic+":110@x"+epoch)
	assert.False(t, reply.Recovered, "%+v", reply)
	recovering, reply := c.subscribe(t, topic, "topics="+topic+"&since="+topic+":110@"+epoch)
	assert.True(t, reply.Recovered, "%+v", reply)
	for k := 111; k <= 120; k++ {
		require.Equal(t, uint64(k), recovering.read().Seq)
	}
}

// publishUntil publishes through n until it has count messages accepted,
// retrying a refused one (503 while NATS is away) after a pause, and
// records each accepted message's data by seq in acked.
func publishUntil(t *testing.T, n *node, topic string, from, count int, mu *sync.Mutex, acked map[uint64]string) {
	for k := from; k < from+count; {
		data := fmt.Sprintf(`{"k":%d}`, k)
		status, seq := n.post(t, topic, data)
		switch status {
		case http.StatusAccepted:
			mu.Lock()
			assert.NotContains(t, acked, seq, "seq given twice")
			acked[seq] = data
			mu.Unlock()
			k++
		case http.StatusServiceUnavailable:
			time.Sleep(20 * time.Millisecond)
		default:
			t.Errorf("publish: status %d", status)
			return
		}
	}
}

// openTopic subscribes to topic on sub, publishes count messages through
// pub and reads them there: the opening of many tests. It returns the
// subscriber and its reply, and the messages acknowledged with their lock,
// for publishUntil and readThrough to go on with.
func openTopic(t *testing.T, sub, pub *node, topic string, count int) (*subscriber, frame, map[uint64]string, *sync.Mutex) {
	t.Helper()
	s, reply := sub.subscribe(t, topic, "topics="+topic)
	s.next = 1
	acked := map[uint64]string{}
	mu := new(sync.Mutex)
	publishUntil(t, pub, topic, 1, count, mu, acked)
	s.readThrough(uint64(count), acked)
	return s, reply, acked, mu
}

// requireClosed reads until the server closes the connection, with code.
func (s *subscriber) requireClosed(code int) {
	s.t.Helper()
	require.NoError(s.t, s.conn.SetReadDeadline(time.Now().Add(waitTimeout)))
	_, msg, err := s.conn.ReadMessage()
	var ce *gorilla.CloseError
	require.ErrorAs(s.t, err, &ce, "got %s", msg)
	assert.Equal(s.t, code, ce.Code)
}

// loseStoreWhileAway cuts away (a node behind p) off from NATS, restarts
// NATS on an empty store, and waits until here (a node on NATS itself) is
// connected again; away stays cut off until p heals.
func loseStoreWhileAway(t *testing.T, ns *natsServer, p *proxy, away, here *node) {
	t.Helper()
	p.partition()
	require.Eventually(t, func() bool { return !away.broker.Connected() }, waitTimeout, 10*time.Millisecond)
	ns.stop()
	ns.dir = t.TempDir() // its store is lost
	ns.start()
	require.Eventually(t, func() bool { return here.broker.Connected() }, waitTimeout, 10*time.Millisecond)
}

// readThrough reads messages until seq last and checks that they come
// gapless from s.next, with the data of those acknowledged.
func (s *subscriber) readThrough(last uint64, acked map[uint64]string) {
	s.t.Helper()
	for s.next <= last {
		f := s.read()
		require.Equal(s.t, "", f.Type, "%+v", f)
		require.Equal(s.t, s.next, f.Seq, "%+v", f)
		if data, ok := acked[f.Seq]; ok {
			require.JSONEq(s.t, data, string(f.Data), "seq %d", f.Seq)
		}
		s.next++
	}
}

// TestNATSRestartUnderLoad: NATS stops and comes back (its store kept)
// while two nodes publish to one topic: publishes are refused meanwhile,
// and every subscriber on either node then gets one gapless sequence that
// holds every message that was acknowledged.
func TestNATSRestartUnderLoad(t *testing.T) {
	ns := startNATS(t)
	a, b := startNode(t, ns.url()), startNode(t, ns.url())
	const topic = "live"
	var subs []*subscriber
	for _, n := range []*node{a, b, a, b} {
		s, _ := n.subscribe(t, topic, "topics="+topic)
		s.next = 1
		subs = append(subs, s)
	}
	var mu sync.Mutex
	acked := map[uint64]string{}
	var wg sync.WaitGroup
	wg.Go(func() { publishUntil(t, a, topic, 0, 30, &mu, acked) })
	wg.Go(func() { publishUntil(t, b, topic, 1000, 30, &mu, acked) })
	wg.Wait()

	ns.stop()
	require.Eventually(t, func() bool { return !a.broker.Connected() && !b.broker.Connected() }, waitTimeout, 10*time.Millisecond)
	wg.Go(func() { publishUntil(t, a, topic, 30, 30, &mu, acked) })
	wg.Go(func() { publishUntil(t, b, topic, 1030, 30, &mu, acked) })
	time.Sleep(300 * time.Millisecond) // publishes refused meanwhile
	ns.start()
	wg.Wait()

	var last uint64
	for seq := range acked {
		last = max(last, seq)
	}
	require.GreaterOrEqual(t, last, uint64(120))
	for _, s := range subs {
		s.readThrough(last, acked)
	}
}

// proxy forwards TCP connections to addr until cut, which closes them and
// refuses new ones until heal: a network partition between a node and
// NATS.
type proxy struct {
	ln   net.Listener
	addr string

	mu    sync.Mutex
	cut   bool
	hole  bool          // accept and hold, say nothing: a NATS that does not answer
	lag   time.Duration // before each read from NATS is passed on: a slow link
	conns []net.Conn
}

func startProxy(t *testing.T, addr string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	p := &proxy{ln: ln, addr: addr}
	t.Cleanup(func() { _ = ln.Close(); p.partition() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			if p.hole {
				p.conns = append(p.conns, c)
				p.mu.Unlock()
				continue
			}
			if p.cut {
				p.mu.Unlock()
				_ = c.Close()
				continue
			}
			up, err := net.Dial("tcp", addr)
			if err != nil {
				p.mu.Unlock()
				_ = c.Close()
				continue
			}
			p.conns = append(p.conns, c, up)
			p.mu.Unlock()
			go func() { _, _ = io.Copy(up, c); _ = up.Close() }()
			go func() { p.copyLagged(c, up); _ = c.Close() }()
		}
	}()
	return p
}

func (p *proxy) url() string { return "nats://" + p.ln.Addr().String() }

// copyLagged copies what NATS sends to dst, each read p.lag late.
func (p *proxy) copyLagged(dst io.Writer, src io.Reader) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			lag := p.lag
			p.mu.Unlock()
			time.Sleep(lag)
			if _, err := dst.Write(buf[:n]); err != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// partition closes every connection and refuses new ones.
func (p *proxy) partition() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = true
	for _, c := range p.conns {
		_ = c.Close()
	}
	p.conns = nil
}

// blackhole closes every connection, and takes new ones without a word.
func (p *proxy) blackhole() {
	p.partition()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.hole = true
}

func (p *proxy) heal() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cut = false
}

// TestConnectedDoesNotWaitForReconnect: Connected, which the hub asks
// with a topic's lock held, and a publish or a watch, which are refused
// without NATS, answer at once while nats.go is in the middle of a
// reconnect attempt to a NATS that takes the connection and says nothing
// (nats.go holds its connection's lock through the attempt, up to its
// timeout).
func TestConnectedDoesNotWaitForReconnect(t *testing.T) {
	ns := startNATS(t)
	p := startProxy(t, ns.addr())
	n := startNode(t, p.url())
	p.blackhole()
	require.Eventually(t, func() bool { return !n.broker.Connected() }, waitTimeout, 10*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for _, call := range []struct {
		name string
		f    func() error
	}{
		{"Connected", func() error {
			if n.broker.Connected() {
				return errors.New("connected")
			}
			return nil
		}},
		{"Publish", func() error {
			_, err := n.broker.Publish(ctx, "t", []byte(`"x"`))
			if !errors.Is(err, broadcast.ErrNotStored) {
				return fmt.Errorf("want a refusal, not %v", err)
			}
			return nil
		}},
		{"Watch", func() error {
			w, _, err := n.broker.Watch(ctx, "t", func(broadcast.BrokerMessage) {})
			if err == nil {
				w.Stop()
				return errors.New("watch started")
			}
			return nil
		}},
	} {
		for range 10 {
			answered := make(chan error, 1)
			go func() { answered <- call.f() }()
			select {
			case err := <-answered:
				require.NoError(t, err, call.name)
			case <-time.After(time.Second):
				t.Fatalf("%s waited for nats.go's reconnect attempt", call.name)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
}

// TestNATSRestartsKeepTheirTopics: NATS restarted on its store loses
// nothing, so a node keeps its subscribers through restart after restart,
// and they go on with the next seqs. (Debian's nats-server 2.9 reports a
// new creation time for the stream after its second restart, which the
// node took for a lost store: it closed every subscriber with 1012.)
func TestNATSRestartsKeepTheirTopics(t *testing.T) {
	ns := startNATS(t)
	a := startNode(t, ns.url())
	const topic = "kept"
	s, _, acked, mu := openTopic(t, a, a, topic, 3)
	for k := 4; k <= 6; k++ {
		ns.stop()
		require.Eventually(t, func() bool { return !a.broker.Connected() }, waitTimeout, 10*time.Millisecond)
		ns.start()
		publishUntil(t, a, topic, k, 1, mu, acked)
		s.readThrough(uint64(k), acked)
	}
}

// TestPartitionedNodeCatchesUp: a node cut off from NATS keeps its
// subscribers and refuses publishes; healed, it catches them up with what
// was published through another node meanwhile, without a gap; cut off
// for longer than the cluster keeps history, it tells them with a dropped
// notice exactly which messages they lost, then goes on.
func TestPartitionedNodeCatchesUp(t *testing.T) {
	ns := startNATS(t)
	p := startProxy(t, ns.addr())
	a, b := startNode(t, ns.url()), startNode(t, p.url())
	const topic = "p"
	s, _, acked, mu := openTopic(t, b, a, topic, 10)

	p.partition()
	require.Eventually(t, func() bool { return !b.broker.Connected() }, waitTimeout, 10*time.Millisecond)
	status, _ := b.post(t, topic, `"refused"`)
	assert.Equal(t, http.StatusServiceUnavailable, status)
	publishUntil(t, a, topic, 11, 10, mu, acked)
	p.heal()
	s.readThrough(20, acked)

	// The cluster keeps 100 messages of a topic, and room for two
	// markers: 21 to 68 are gone when the node is back.
	p.partition()
	require.Eventually(t, func() bool { return !b.broker.Connected() }, waitTimeout, 10*time.Millisecond)
	publishUntil(t, a, topic, 21, 150, mu, acked)
	p.heal()
	f := s.read()
	assert.Equal(t, "dropped", f.Type, "%+v", f)
	assert.Equal(t, uint64(21), f.From, "%+v", f)
	assert.Equal(t, uint64(68), f.To, "%+v", f)
	s.next = 69
	s.readThrough(170, acked)

	// The node's own history starts after the gap: a since before it is
	// not recovered there, one after it is.
	_, reply := b.subscribe(t, topic, "topics="+topic+"&since="+topic+":30")
	assert.False(t, reply.Recovered, "%+v", reply)
	r, reply := b.subscribe(t, topic, "topics="+topic+"&since="+topic+":160")
	assert.True(t, reply.Recovered, "%+v", reply)
	r.next = 161
	r.readThrough(170, acked)
}

// TestClientSubscribesOnceNATSIsBack: the bundled client, refused a
// subscribe as unavailable by a node cut off from NATS, which keeps the
// connection, asks again until the node is back, and then gets the topic's
// messages.
func TestClientSubscribesOnceNATSIsBack(t *testing.T) {
	ns := startNATS(t)
	a := startNode(t, ns.url())
	ns.stop()
	require.Eventually(t, func() bool { return !a.broker.Connected() }, waitTimeout, 10*time.Millisecond)

	refused := make(chan string, 16)
	subscribed := make(chan uint64, 16)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := client.Dial(ctx, "ws://"+a.addr, &client.Options{OnEvent: func(e client.Event) {
		switch e.Kind {
		case client.Refused:
			refused <- e.ErrorCode
		case client.Subscribed:
			subscribed <- e.Seq
		}
	}})
	require.NoError(t, err)
	defer c.Close()
	got := make(chan client.Message, 16)
	require.NoError(t, c.Subscribe("later", func(m client.Message) { got <- m }))
	select {
	case code := <-refused:
		assert.Equal(t, "unavailable", code)
	case <-time.After(waitTimeout):
		t.Fatal("the subscribe was not refused")
	}

	ns.start()
	// The subscribe counts as soon as it waits for the node's watch to
	// start; messages follow the seq its reply gives.
	select {
	case <-subscribed:
	case <-time.After(waitTimeout):
		t.Fatal("the client did not subscribe again")
	}
	status, seq := a.post(t, "later", `"hello"`)
	require.Equal(t, http.StatusAccepted, status)
	select {
	case m := <-got:
		assert.Equal(t, seq, m.Seq)
		assert.JSONEq(t, `"hello"`, string(m.Data))
	case <-time.After(waitTimeout):
		t.Fatal("no message after NATS came back")
	}
}

// TestQuietTopicKeepsItsSeq: a topic with subscribers that stays quiet for
// longer than history lasts keeps its seq and epoch: the next message
// continues them, for the subscribers there and for one who comes later
// on another node, rather than start again at 1 under them.
func TestQuietTopicKeepsItsSeq(t *testing.T) {
	ns := startNATS(t)
	const age = time.Second
	a, b := startNode(t, ns.url(), age), startNode(t, ns.url(), age)
	const topic = "quiet"
	s, reply, acked, mu := openTopic(t, a, a, topic, 3)
	epoch := reply.Epoch

	time.Sleep(3 * age) // every message stored ages out meanwhile
	publishUntil(t, b, topic, 4, 1, mu, acked)
	require.Contains(t, acked, uint64(4), "the seq after a quiet spell")
	s.readThrough(4, acked)
	later, reply := b.subscribe(t, topic, "topics="+topic)
	assert.Equal(t, uint64(4), reply.Seq)
	assert.Equal(t, epoch, reply.Epoch)
	publishUntil(t, a, topic, 5, 1, mu, acked)
	later.next = 5
	later.readThrough(5, acked)
	s.readThrough(5, acked)
}

// subscribeAll opens one connection to n that subscribes to topics, and
// reads their replies, which in a cluster may come in any order.
func subscribeAll(t *testing.T, n *node, topics []string) *subscriber {
	t.Helper()
	c, _, err := gorilla.DefaultDialer.Dial("ws://"+n.addr+"/ws?topics="+strings.Join(topics, ","), nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	s := &subscriber{t: t, conn: c}
	for range topics {
		f := s.read()
		require.Equal(t, "subscribed", f.Type, "%+v", f)
	}
	return s
}

// TestQuietTopicsKeptOverSlowLink: a node watching many quiet topics over
// a slow link keeps them all before their last messages age out. One
// marker at a time, each a round trip, the topics at the end of a pass
// (40 × 100 ms) aged out first and started afresh under their subscribers.
func TestQuietTopicsKeptOverSlowLink(t *testing.T) {
	ns := startNATS(t)
	p := startProxy(t, ns.addr())
	const age = 4 * time.Second
	a, b := startNode(t, ns.url(), age), startNode(t, p.url(), age)
	const n = 40
	var topics []string
	for i := range n {
		topics = append(topics, fmt.Sprintf("q%d", i))
	}
	s := subscribeAll(t, b, topics)
	for _, topic := range topics {
		status, seq := a.post(t, topic, `1`)
		require.Equal(t, http.StatusAccepted, status)
		require.Equal(t, uint64(1), seq)
	}
	for range n {
		f := s.read()
		require.Equal(t, uint64(1), f.Seq, "%+v", f)
	}
	p.mu.Lock()
	p.lag = 100 * time.Millisecond
	p.mu.Unlock()

	time.Sleep(2 * age) // every message stored ages out meanwhile
	for _, topic := range topics {
		status, seq := a.post(t, topic, `2`)
		require.Equal(t, http.StatusAccepted, status)
		assert.Equal(t, uint64(2), seq, "topic %s started afresh under a subscriber", topic)
	}
}

// TestLateWatchKeepsQuietTopic: a node that starts watching a topic whose
// last message is already old keeps it from aging out to nothing, counting
// its quiet from when the message was stored, not from when the node
// received it.
func TestLateWatchKeepsQuietTopic(t *testing.T) {
	ns := startNATS(t)
	const age = time.Second
	a, b := startNode(t, ns.url(), age), startNode(t, ns.url(), age)
	const topic = "late"
	status, seq := a.post(t, topic, `1`) // no subscriber anywhere
	require.Equal(t, http.StatusAccepted, status)
	require.Equal(t, uint64(1), seq)
	time.Sleep(age * 3 / 4)
	s, reply := b.subscribe(t, topic, "topics="+topic)
	require.Equal(t, uint64(1), reply.Seq)
	time.Sleep(2 * age)
	status, seq = a.post(t, topic, `2`)
	require.Equal(t, http.StatusAccepted, status)
	assert.Equal(t, uint64(2), seq, "the topic started afresh under a subscriber")
	f := s.read()
	assert.Equal(t, uint64(2), f.Seq, "%+v", f)
}

// TestNATSLosesItsStore: NATS comes back without its store, and so without
// the stream. The node makes the stream anew, and the subscribers of the
// topics it watched, whose seqs are of a history that is gone, are closed
// with 1012; coming back with since, they are told recovered:false in the
// topic's new epoch, and get what is published from then on.
func TestNATSLosesItsStore(t *testing.T) {
	ns := startNATS(t)
	a := startNode(t, ns.url())
	const topic = "kept"
	s, reply, _, _ := openTopic(t, a, a, topic, 3)
	epoch := reply.Epoch

	ns.stop()
	ns.dir = t.TempDir() // its store is lost
	ns.start()
	s.requireClosed(1012)

	back, reply := a.subscribe(t, topic, "topics="+topic+"&since="+topic+":3@"+epoch)
	assert.False(t, reply.Recovered, "%+v", reply)
	assert.NotEqual(t, epoch, reply.Epoch)
	status, seq := a.post(t, topic, `"after"`)
	require.Equal(t, http.StatusAccepted, status)
	f := back.read()
	assert.Equal(t, seq, f.Seq, "%+v", f)
	assert.Equal(t, reply.Seq+1, f.Seq)
}

// TestStoreLostWhileAway: NATS loses its store while a node is cut off
// from it, and by the time the node is back the new stream has grown past
// the last message the node had received, whose place a busy topic's
// per-subject limit has emptied. The node still finds its topic gone and
// closes its subscribers with 1012, rather than keep the old epoch and
// wait, past the new stream's messages of the topic, for ones that never
// come.
func TestStoreLostWhileAway(t *testing.T) {
	ns := startNATS(t)
	p := startProxy(t, ns.addr())
	a, b := startNode(t, ns.url()), startNode(t, p.url())
	const topic = "r"
	s, _, _, mu := openTopic(t, b, a, topic, 3) // stream seqs 1 (the epoch's marker) to 4

	loseStoreWhileAway(t, ns, p, b, a)
	fresh := map[uint64]string{}
	publishUntil(t, a, topic, 1, 1, mu, fresh) // stream seq 1 (503 until a has made the stream anew)
	require.Contains(t, fresh, uint64(1), "the topic starts afresh")
	// Stream seqs 2 to 111; the cluster keeps 102 of them, so 2 to 9 go.
	publishUntil(t, a, "busy", 1, 110, mu, map[uint64]string{})
	p.heal()

	s.requireClosed(1012)
}

// TestStoreLostSeenOverSlowLink: the check after a reconnect reads each
// watched topic from NATS, and a node that watches many over a slow link
// gets through them (each read has its own time, a few run at once, and a
// retry goes on from where the last try stopped), rather than start over
// for ever and never find that NATS lost its store while it was away.
func TestStoreLostSeenOverSlowLink(t *testing.T) {
	ns := startNATS(t)
	p := startProxy(t, ns.addr())
	a, b := startNode(t, ns.url()), startNode(t, p.url())
	const conns, each = 2, 75
	var subs []*subscriber
	for c := range conns {
		var topics []string
		for i := range each {
			topics = append(topics, fmt.Sprintf("t%d-%d", c, i))
		}
		subs = append(subs, subscribeAll(t, b, topics))
	}

	loseStoreWhileAway(t, ns, p, b, a)
	// The new stream grows past what b had received (stream seqs up to
	// 150), so that b must read each of its topics.
	var mu sync.Mutex
	publishUntil(t, a, "busy", 1, 2*conns*each, &mu, map[uint64]string{})
	p.mu.Lock()
	p.lag = 100 * time.Millisecond // 15 s for 150 reads one after another
	p.mu.Unlock()
	p.heal()

	for _, s := range subs {
		s.requireClosed(1012)
	}
}

// TestCloseDeletesConsumers: a node that stops takes its JetStream
// consumers with it.
func TestCloseDeletesConsumers(t *testing.T) {
	ns := startNATS(t)
	a := startNode(t, ns.url())
	for i := range 3 {
		topic := fmt.Sprintf("c%d", i)
		a.subscribe(t, topic, "topics="+topic)
	}
	nc, err := nats.Connect(ns.url())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	stream, err := js.Stream(ctx, "FANOUT")
	require.NoError(t, err)
	assert.Equal(t, 3, stream.CachedInfo().State.Consumers)
	a.broker.Close()
	info, err := stream.Info(ctx)
	require.NoError(t, err)
	assert.Zero(t, info.State.Consumers)
}

// TestPublishAfterStoreLoss: a node that published to a topic it does not
// watch, before NATS lost its store, builds its next publish on the new
// stream's messages: the topic's new epoch and seqs, not the old ones it
// had cached.
func TestPublishAfterStoreLoss(t *testing.T) {
	ns := startNATS(t)
	a, b := startNode(t, ns.url()), startNode(t, ns.url())
	const topic = "p"
	for k := 1; k <= 3; k++ {
		status, _ := a.post(t, topic, `"old"`) // no subscriber: a only publishes
		require.Equal(t, http.StatusAccepted, status)
	}
	ns.stop()
	ns.dir = t.TempDir()
	ns.start()
	require.Eventually(t, func() bool { return a.broker.Connected() && b.broker.Connected() }, waitTimeout, 10*time.Millisecond)

	s, reply := b.subscribe(t, topic, "topics="+topic) // the new stream's epoch marker: stream seq 1
	require.Zero(t, reply.Seq)
	s.next = 1
	acked := map[uint64]string{}
	var mu sync.Mutex
	publishUntil(t, b, topic, 1, 2, &mu, acked) // stream seqs 2 and 3, as a's cached head was
	publishUntil(t, a, topic, 3, 1, &mu, acked)
	require.Contains(t, acked, uint64(3), "a's publish continues the new epoch")
	s.readThrough(3, acked)
}

// TestForeignMessageLast: a message on a topic's subject that fanout did
// not store (no Fanout-Seq) is skipped, and a subscribe whose backlog ends
// with it is answered at once, not after the watch's timeout.
func TestForeignMessageLast(t *testing.T) {
	ns := startNATS(t)
	a := startNode(t, ns.url())
	status, _ := a.post(t, "mixed", `1`)
	require.Equal(t, http.StatusAccepted, status)
	nc, err := nats.Connect(ns.url())
	require.NoError(t, err)
	defer nc.Close()
	js, err := jetstream.New(nc)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	_, err = js.Publish(ctx, "fanout.mixed", []byte("not fanout's"))
	require.NoError(t, err)

	c, _, err := gorilla.DefaultDialer.Dial("ws://"+a.addr+"/ws?topics=mixed", nil)
	require.NoError(t, err)
	defer c.Close()
	require.NoError(t, c.SetReadDeadline(time.Now().Add(3*time.Second))) // the deadline of a hang
	_, p, err := c.ReadMessage()
	require.NoError(t, err, "no subscribed reply")
	var f frame
	require.NoError(t, json.Unmarshal(p, &f))
	assert.Equal(t, "subscribed", f.Type, "%s", p)
	assert.Equal(t, uint64(1), f.Seq)
}
