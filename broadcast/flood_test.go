package broadcast_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

const (
	floodTopic        = "flood"
	floodSlow         = 4   // subscribers that never read
	floodPublishers   = 3   // two with Hub.Publish, one with POST /publish
	floodPerPublisher = 700 // 8.4 MB in all: far more than any socket buffer
	floodDataBytes    = 4 << 10
	floodQueueBytes   = 256 << 10
	// floodWindow is how many messages the publishers may be ahead of the
	// slowest fast subscriber. Its bytes are less than floodQueueBytes, so
	// that a subscriber that reads is never a slow consumer, however the
	// scheduler treats it on a loaded machine.
	floodWindow = 48
	// controlDeadline bounds each round trip of the control client: a
	// deadline for a server that stopped answering, not a latency target.
	controlDeadline = 5 * time.Second
)

// TestPublisherFloodWithSlowSubscribers: 3 publishers (Hub.Publish and
// POST /publish) flood a topic with 2100 messages of 4 KiB that 2 fast
// subscribers (both libraries) and 4 slow ones (raw clients with a 4 KiB
// receive buffer that never read) subscribe to, on a server with a 256 KiB
// write queue. Meanwhile a control client keeps doing round trips: a plain
// HTTP request, a POST /publish it receives on its own WebSocket, a ping,
// and a subscribe and unsubscribe; each must complete within
// controlDeadline. The fast subscribers get every message in order with its
// data; the server's queued bytes stay within the slow subscribers' queue
// limits plus the fast ones' window; under Disconnect each slow subscriber
// is closed (4008) after a gapless prefix, under Drop each stays connected
// and sees gaps that add up to the drops counted and that since recovers;
// either way everything is released once the flood is over.
func TestPublisherFloodWithSlowSubscribers(t *testing.T) {
	for _, policy := range []broadcast.Policy{broadcast.Disconnect, broadcast.Drop} {
		t.Run(policy.String(), func(t *testing.T) { testPublisherFlood(t, policy) })
	}
}

// floodGate holds the publishers back to floodWindow messages ahead of the
// slowest fast subscriber.
type floodGate struct {
	mu      sync.Mutex
	cond    sync.Cond
	started int   // publishes begun
	got     []int // messages each fast subscriber has read
	failed  bool  // a subscriber failed: stop publishing
}

func newFloodGate(subscribers int) *floodGate {
	g := &floodGate{got: make([]int, subscribers)}
	g.cond.L = &g.mu
	return g
}

// acquire waits for room in the window; false: stop.
func (g *floodGate) acquire() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for !g.failed && g.started-slices.Min(g.got) >= floodWindow {
		g.cond.Wait()
	}
	g.started++
	return !g.failed
}

func (g *floodGate) advance(i int) {
	g.mu.Lock()
	g.got[i]++
	g.mu.Unlock()
	g.cond.Broadcast()
}

func (g *floodGate) hasFailed() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.failed
}

func (g *floodGate) fail() {
	g.mu.Lock()
	g.failed = true
	g.mu.Unlock()
	g.cond.Broadcast()
}

var dataSeed = maphash.MakeSeed()

// dataHash stands for data: the fast subscribers keep hashes, not megabytes.
func dataHash(p []byte) uint64 { return maphash.Bytes(dataSeed, p) }

// floodMessage decodes a topic message with one pass of encoding/json
// (parseFrame takes two, and under -race the flood's thousands of 4 KiB
// messages make that the test's main cost).
func floodMessage(p []byte) (frame, error) {
	var m struct {
		Type  *string         `json:"type"`
		Topic string          `json:"topic"`
		Seq   uint64          `json:"seq"`
		Data  json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(p, &m); err != nil {
		return frame{Raw: p}, fmt.Errorf("server message %.80q: %w", p, err)
	}
	if m.Type != nil || m.Seq == 0 || m.Data == nil {
		return frame{Raw: p}, fmt.Errorf("server message %.200q: want a topic message", p)
	}
	return frame{Raw: p, Topic: m.Topic, Seq: m.Seq, Data: m.Data}, nil
}

// floodData is the data of flood message i: distinct for each i.
func floodData(i int) string { return jsonData(i, floodDataBytes) }

// controlStep is one kind of round trip of the control client.
type controlStep struct {
	name     string
	n        int
	sum, max time.Duration
}

func (s *controlStep) add(d time.Duration) {
	s.n++
	s.sum += d
	s.max = max(s.max, d)
}

func testPublisherFlood(t *testing.T, policy broadcast.Policy) {
	const total = floodPublishers * floodPerPublisher
	ts := startHub(t, broadcast.Config{SlowConsumer: policy, HistorySize: 2 * total},
		wsconn.Config{MaxQueueBytes: floodQueueBytes})
	frameBytes := len(fmt.Sprintf(`{"topic":%q,"seq":%d,"data":%s}`, floodTopic, total, floodData(total))) + 10

	// Slow subscribers: subscribed (the reply read), then never read again.
	slow := make([]*rawClient, floodSlow)
	for i := range slow {
		slow[i] = dialRaw(t, ts.addr, "/ws?topics="+floodTopic, 4096)
		f, err := slow[i].readFrame(waitTimeout)
		require.NoError(t, err)
		r, err := parseFrame(f.Payload)
		require.NoError(t, err)
		require.Equal(t, "subscribed", r.Type, "%s", r)
	}

	// Fast subscribers read in goroutines of their own, check the order
	// and keep each message's data hash, up to the end marker.
	gate := newFloodGate(len(clientKinds))
	type fastResult struct {
		hashes []uint64 // hashes[seq-1]
		err    error
	}
	fastDone := make([]chan fastResult, len(clientKinds))
	for i, kind := range clientKinds {
		c := mustDial(t, kind, ts.addr, "topics="+floodTopic)
		mustReadSubscribed(t, c, floodTopic)
		fastDone[i] = make(chan fastResult, 1)
		go func() {
			var res fastResult
			defer func() { fastDone[i] <- res }()
			for next := uint64(1); ; next++ {
				p, err := c.ReadText(waitTimeout)
				var f frame
				if err == nil {
					f, err = floodMessage(p)
				}
				if err == nil && (f.Topic != floodTopic || f.Seq != next) {
					err = fmt.Errorf("want message %s:%d, got %s", floodTopic, next, f)
				}
				if err != nil {
					res.err = fmt.Errorf("fast subscriber %s (close code %d): %w", kind, closeCode(err), err)
					gate.fail()
					return
				}
				res.hashes = append(res.hashes, dataHash(f.Data))
				gate.advance(i)
				if string(f.Data) == endMarker {
					return
				}
			}
		}()
	}

	// The control client: its own topic for the publish round trip.
	ctl := dialRaw(t, ts.addr, "/ws?topics=ctl", 0)
	f, err := ctl.readFrame(waitTimeout)
	require.NoError(t, err)
	r, err := parseFrame(f.Payload)
	require.NoError(t, err)
	require.Equal(t, "subscribed", r.Type, "%s", r)

	// The sampler watches the bytes queued on all connections.
	var maxQueued int64
	stopSampling := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			maxQueued = max(maxQueued, ts.srv.QueuedBytes())
			select {
			case <-stopSampling:
				return
			case <-time.After(2 * time.Millisecond):
			}
		}
	}()

	var (
		ledgerMu sync.Mutex
		ledger   = make(map[uint64]int, total) // seq -> i of floodData(i)
	)
	pubErrs := make([]error, floodPublishers)
	var pubs sync.WaitGroup
	floodStart := time.Now()
	for p := range floodPublishers {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			for k := range floodPerPublisher {
				if !gate.acquire() {
					return
				}
				i := p*floodPerPublisher + k
				var seq uint64
				var err error
				if p == 0 {
					seq, err = ts.postSeq(floodTopic, []byte(floodData(i)))
				} else {
					seq, err = ts.hub.Publish(floodTopic, []byte(floodData(i)))
				}
				if err != nil {
					pubErrs[p] = fmt.Errorf("publisher %d, message %d: %w", p, k, err)
					gate.fail()
					return
				}
				ledgerMu.Lock()
				ledger[seq] = i
				ledgerMu.Unlock()
			}
		}()
	}
	flooding := make(chan struct{})
	go func() { pubs.Wait(); close(flooding) }()

	// Round trips until the flood is over, and at least a few.
	steps := []*controlStep{{name: "GET /publish (405)"}, {name: "POST /publish to WebSocket"}, {name: "ping/pong"},
		{name: "subscribe/unsubscribe"}}
	ctlHTTP := &http.Client{Timeout: controlDeadline}
	timed := func(s *controlStep, f func()) {
		t.Helper()
		start := time.Now()
		f()
		d := time.Since(start)
		require.Less(t, d, controlDeadline, "%s round trip", s.name)
		s.add(d)
	}
	readCtl := func(what string) (rawFrame, frame) {
		t.Helper()
		rf, err := ctl.readFrame(controlDeadline)
		require.NoError(t, err, "control client waiting for %s; hub %+v", what, ts.hub.Stats())
		if rf.Op != opText {
			return rf, frame{}
		}
		f, err := parseFrame(rf.Payload)
		require.NoError(t, err)
		return rf, f
	}
	over := func() bool {
		select {
		case <-flooding:
			return true
		default:
			return false
		}
	}
	for i := 0; i < 3 || !over(); i++ {
		timed(steps[0], func() {
			resp, err := ctlHTTP.Get("http://" + ts.addr + "/publish")
			require.NoError(t, err)
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			require.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
		})
		timed(steps[1], func() {
			resp, err := ctlHTTP.Post("http://"+ts.addr+"/publish?topic=ctl", "application/json",
				strings.NewReader(fmt.Sprintf(`{"ctl":%d}`, i)))
			require.NoError(t, err)
			var body struct{ Seq uint64 }
			err = json.NewDecoder(resp.Body).Decode(&body)
			_ = resp.Body.Close()
			require.NoError(t, err)
			require.Equal(t, http.StatusAccepted, resp.StatusCode)
			_, f := readCtl("its message")
			require.True(t, f.isMessage() && f.Topic == "ctl" && f.Seq == body.Seq, "want ctl:%d, got %s", body.Seq, f)
		})
		timed(steps[2], func() {
			p := fmt.Appendf(nil, "ping %d", i)
			ctl.write(t, clientFrame(opPing, len(p), p))
			rf, _ := readCtl("a pong")
			require.Equal(t, opPong, rf.Op, "frame %q", rf.Payload)
			require.Equal(t, p, rf.Payload)
		})
		timed(steps[3], func() {
			topic := fmt.Sprintf("ctl-%d", i)
			msg := []byte(subscribeMsg(topic))
			ctl.write(t, clientFrame(opText, len(msg), msg))
			_, f := readCtl("the subscribed reply")
			require.True(t, f.Type == "subscribed" && f.Topic == topic, "want subscribed %s, got %s", topic, f)
			msg = []byte(unsubscribeMsg(topic))
			ctl.write(t, clientFrame(opText, len(msg), msg))
			_, f = readCtl("the unsubscribed reply")
			require.True(t, f.Type == "unsubscribed" && f.Topic == topic, "want unsubscribed %s, got %s", topic, f)
		})
		time.Sleep(10 * time.Millisecond)
	}
	floodTime := time.Since(floodStart)
	close(stopSampling)
	<-sampled
	require.NoError(t, errors.Join(pubErrs...))
	if gate.hasFailed() { // the publishers stopped early: say why
		for i := range fastDone {
			select {
			case res := <-fastDone[i]:
				require.NoError(t, res.err)
			default:
			}
		}
	}
	var report []string
	for _, s := range steps {
		report = append(report, fmt.Sprintf("%s: %d, mean %v, max %v", s.name, s.n, (s.sum/time.Duration(s.n)).Round(time.Microsecond), s.max.Round(time.Microsecond)))
	}
	st := ts.hub.Stats()
	t.Logf("%s: %d messages of %d bytes to %d subscribers in %v; control round trips: %s; max queued %d bytes; hub %+v",
		policy, total, floodDataBytes, floodSlow+len(clientKinds), floodTime.Round(time.Millisecond),
		strings.Join(report, "; "), maxQueued, st)

	// The fast subscribers' queues hold at most the window; each slow one's
	// at most its limit and the frame that passed it.
	bound := int64(floodSlow*(floodQueueBytes+frameBytes) + len(clientKinds)*(floodWindow+1)*frameBytes + 64<<10)
	assert.LessOrEqual(t, maxQueued, bound, "queued bytes")

	endFast := func() uint64 {
		t.Helper()
		end := ts.publish(t, floodTopic, endMarker)
		for i := range fastDone {
			select {
			case res := <-fastDone[i]:
				require.NoError(t, res.err)
				require.Len(t, res.hashes, int(end), "fast subscriber %s", clientKinds[i])
				for s, k := range ledger {
					require.Equal(t, dataHash([]byte(floodData(k))), res.hashes[s-1], "data of %s:%d", floodTopic, s)
				}
			case <-time.After(waitTimeout):
				t.Fatalf("fast subscriber %s did not get the end marker", clientKinds[i])
			}
		}
		return end
	}
	require.Len(t, ledger, total)

	switch policy {
	case broadcast.Disconnect:
		require.Equal(t, uint64(floodSlow), st.SlowDisconnects, "every slow subscriber is evicted")
		assert.Zero(t, st.Drops)
		endFast()
		// The evicted ones are released even though they never read:
		// after the close timeout at the latest.
		requireReleased(t, ts, len(clientKinds)+1)
		// What each had been sent is a gapless prefix, then the close
		// frame 4008 if the socket had room for it, then the end. Released
		// by the close timeout, a connection may also end in the middle of
		// the frame the socket had no room for.
		endings := make(map[string]int)
		for i, c := range slow {
			next := uint64(1)
			closed := false
			for {
				f, err := c.readFrame(waitTimeout)
				switch {
				case errors.Is(err, io.EOF) && closed:
					endings["close frame 4008, EOF"]++
				case errors.Is(err, io.EOF):
					endings["EOF"]++
				case errors.Is(err, io.ErrUnexpectedEOF):
					endings["EOF in a frame"]++
				case errors.Is(err, syscall.ECONNRESET):
					endings["RST"]++
				}
				if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) {
					break
				}
				require.NoError(t, err, "slow subscriber %d after message %d", i, next-1)
				require.False(t, closed, "slow subscriber %d: a frame after the close frame", i)
				if f.Op == opClose {
					assert.Equal(t, int(broadcast.CloseSlowConsumer), f.closeCode(), "close frame %q", f.Payload)
					closed = true
					continue
				}
				require.Equal(t, opText, f.Op)
				m, err := floodMessage(f.Payload)
				require.NoError(t, err)
				require.Equal(t, next, m.Seq, "slow subscriber %d: a gapless prefix", i)
				next++
			}
			assert.Less(t, next-1, uint64(total), "slow subscriber %d cannot have got every message", i)
		}
		t.Logf("the slow subscribers' streams ended with: %v", endings)

	case broadcast.Drop:
		assert.Zero(t, st.SlowDisconnects)
		require.Positive(t, st.Drops)
		assert.Equal(t, int64(floodSlow+len(clientKinds)+1), st.Clients, "the slow subscribers are still connected")
		// Now they read: each drains its queue and gets the end marker,
		// published once no queue holds anything.
		// Every seq is told once, in order: as a message, or in the run
		// of a dropped notice (readAccounted).
		type slowResult struct {
			next, missing uint64
			firstGap      uint64 // the first seq of its first dropped run
			err           error
		}
		slowDone := make([]chan slowResult, floodSlow)
		for i, c := range slow {
			slowDone[i] = make(chan slowResult, 1)
			go func() {
				res := slowResult{next: 1}
				err := readAccounted(c, floodTopic, &res.next, &res.missing, func(m frame) bool {
					if m.Type == "dropped" && res.firstGap == 0 {
						res.firstGap = m.From
					}
					return m.isMessage() && string(m.Data) == endMarker
				})
				if err != nil {
					res.err = fmt.Errorf("slow subscriber %d: %w", i, err)
				}
				slowDone[i] <- res
			}()
		}
		require.Eventually(t, func() bool { return ts.srv.QueuedBytes() == 0 }, waitTimeout, 5*time.Millisecond,
			"the slow subscribers' queues drain once they read")
		end := endFast()
		missing := uint64(0)
		var firstGap []uint64 // per slow subscriber: the last seq before its first gap
		for i := range slowDone {
			var res slowResult
			select {
			case res = <-slowDone[i]:
			case <-time.After(waitTimeout):
				t.Fatalf("slow subscriber %d did not get the end marker", i)
			}
			require.NoError(t, res.err)
			require.Equal(t, end+1, res.next)
			require.Positive(t, res.firstGap, "slow subscriber %d saw a gap", i)
			missing += res.missing
			firstGap = append(firstGap, res.firstGap-1)
		}
		st = ts.hub.Stats()
		assert.Equal(t, st.Drops, missing, "every drop is a seq a slow subscriber did not get")
		assert.Zero(t, st.SlowDisconnects)

		// A slow subscriber recovers from its first gap with since.
		since := firstGap[0]
		c := mustDial(t, "gorilla", ts.addr, fmt.Sprintf("topics=%s&since=%s:%d", floodTopic, floodTopic, since))
		r := mustReadSubscribed(t, c, floodTopic)
		require.True(t, r.Recovered, "%s", r)
		require.Equal(t, since, r.Seq)
		for s := since + 1; s <= end; s++ {
			p, err := c.ReadText(waitTimeout)
			require.NoError(t, err)
			f, err := floodMessage(p)
			require.NoError(t, err)
			require.Equal(t, s, f.Seq, "%.80s", f)
			if s < end {
				require.Equal(t, dataHash([]byte(floodData(ledger[s]))), dataHash(f.Data), "data of %s:%d", floodTopic, s)
			}
		}
		c.Close()
		requireReleased(t, ts, floodSlow+len(clientKinds)+1)
		t.Logf("slow subscribers missed %d messages in all; one recovered %d from seq %d", missing, end-since, since+1)
	}
}

// requireReleased waits until the server holds only clients connections,
// each with its one subscription, and no queued byte.
func requireReleased(t *testing.T, ts *testServer, clients int) {
	t.Helper()
	require.Eventually(t, func() bool {
		st := ts.hub.Stats()
		return ts.srv.QueuedBytes() == 0 && st.Clients == int64(clients) && st.Subscriptions == int64(clients) &&
			ts.srv.Stats().WebSockets == int64(clients)
	}, waitTimeout, 5*time.Millisecond, "released: queued %d bytes, hub %+v, server %+v",
		ts.srv.QueuedBytes(), ts.hub.Stats(), ts.srv.Stats())
}
