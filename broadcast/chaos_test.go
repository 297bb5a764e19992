package broadcast_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// Environment variables that reproduce a run of TestRecoveryUnderChaos: the
// seed of the first round and the number of rounds (round i uses seed+i).
const (
	chaosSeedEnv   = "FANOUT_CHAOS_SEED"
	chaosRoundsEnv = "FANOUT_CHAOS_ROUNDS"
)

// TestRecoveryUnderChaos: publishers (Hub.Publish, POST /publish and
// WebSocket publish messages) publish continuously to 4 topics while 16
// subscribers (both libraries, 1 to 3 topics each) drop their connections
// at random moments in random ways (close handshake, FIN without a close
// frame, RST, half a client frame then FIN or RST, a read deadline in the
// middle of a server frame) and reconnect with since, in the URL, in
// subscribe messages, or both. With history holding everything, each
// subscriber must get, over all its connections, every message of each of
// its topics from its first subscription on exactly once, in seq order,
// with the data that was published; every since-subscribe is recovered;
// half-sent publishes publish nothing; and when all is over the hub holds
// no client and no subscription.
func TestRecoveryUnderChaos(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv(chaosSeedEnv); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		require.NoError(t, err, "%s", chaosSeedEnv)
		seed = v
	}
	rounds := 4
	if testing.Short() {
		rounds = 1
	}
	if s := os.Getenv(chaosRoundsEnv); s != "" {
		v, err := strconv.Atoi(s)
		require.NoError(t, err, "%s", chaosRoundsEnv)
		rounds = v
	}
	t.Logf("seed %d, %d rounds; reproduce with %s=%d %s=%d", seed, rounds, chaosSeedEnv, seed, chaosRoundsEnv, rounds)
	for r := range rounds {
		s := seed + uint64(r)
		t.Run(fmt.Sprintf("seed=%d", s), func(t *testing.T) { runChaos(t, s) })
	}
}

// How a chaos subscriber leaves a connection.
type chaosDrop int

const (
	chaosDropClean        chaosDrop = iota // close handshake (the server's close frame awaited)
	chaosDropAbrupt                        // FIN without a close frame
	chaosDropReset                         // RST (SO_LINGER 0)
	chaosDropMidFrame                      // part of a publish frame, then FIN or RST
	chaosDropCloseReset                    // a close frame, then RST at once
	chaosDropReadDeadline                  // a read deadline passed, maybe in the middle of a frame
	chaosDropSlowConsumer                  // the server closed it with 4008
	nChaosDrops
)

var chaosDropNames = [nChaosDrops]string{"clean", "abrupt", "reset", "mid-frame", "close+reset", "read-deadline", "4008"}

// chaosConfig is one round's shape.
type chaosConfig struct {
	topics     []string
	publishFor time.Duration // publishers publish for this long
	start      time.Time     // when publishing started
	publishing atomic.Bool   // chaos with time budgets only while publishing
	// ready counts subscribers that have had a first reply for each of
	// their topics. Publishers go on until all are: a first reply after
	// the end marker would leave a subscriber waiting for it.
	ready atomic.Int32
}

// chaosTopic is what one subscriber saw of one topic over all its
// connections.
type chaosTopic struct {
	first uint64   // the first seq expected: its first subscribed reply's seq + 1
	next  uint64   // the next seq expected; 0 until the first subscribed reply
	data  []string // data[i] is the data of seq first+i
	epoch string
	done  bool // got the end marker
}

// Subscription states of a topic on one connection.
const (
	chaosFresh = iota // subscribe without since sent: no message may come before the reply
	chaosSince        // subscribe with since sent: the reply comes first, then the replay in order
	chaosLive         // reply received
)

type chaosResult struct {
	topics     map[string]*chaosTopic
	drops      [nChaosDrops]int
	conns      int
	recoveries int // since-subscribes answered
	ready      bool
	err        error
}

// chaosDial is dial that also returns the TCP connection under the
// WebSocket, for what the libraries do not do: RST, half a frame.
func chaosDial(kind, addr, query string) (wsClient, *net.TCPConn, error) {
	var tcp *net.TCPConn
	d := net.Dialer{Timeout: waitTimeout}
	dialCtx := func(ctx context.Context, network, a string) (net.Conn, error) {
		c, err := d.DialContext(ctx, network, a)
		if err == nil {
			tcp = c.(*net.TCPConn)
		}
		return c, err
	}
	u := "ws://" + addr + "/ws"
	if query != "" {
		u += "?" + query
	}
	switch kind {
	case "gorilla":
		gd := gorilla.Dialer{HandshakeTimeout: waitTimeout, NetDialContext: dialCtx}
		c, _, err := gd.Dial(u, nil)
		if err != nil {
			return nil, nil, err
		}
		c.SetReadLimit(4 << 20)
		return &gorillaClient{c}, tcp, nil
	case "coder":
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		// A transport of its own, so that the dial hook sees this
		// connection and no other.
		hc := &http.Client{Transport: &http.Transport{DialContext: dialCtx}}
		c, _, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPClient: hc})
		if err != nil {
			return nil, nil, err
		}
		c.SetReadLimit(4 << 20)
		return &coderClient{c}, tcp, nil
	}
	panic("unknown client kind " + kind)
}

// chaosIsTimeout reports whether a read of either library ended at its deadline.
// (gorilla hides the cause behind a net.Error of its own.)
func chaosIsTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout()
}

// chaosCloseClean runs the close handshake and reports whether the server
// answered with 1000 (or had already evicted the client with 4008).
func chaosCloseClean(c wsClient) error {
	switch c := c.(type) {
	case *gorillaClient:
		defer c.c.Close()
		msg := gorilla.FormatCloseMessage(gorilla.CloseNormalClosure, "bye")
		if err := c.c.WriteControl(gorilla.CloseMessage, msg, time.Now().Add(waitTimeout)); err != nil {
			return fmt.Errorf("writing the close frame: %w", err)
		}
		// Messages still on their way are discarded, as any client does.
		if err := c.c.SetReadDeadline(time.Now().Add(waitTimeout)); err != nil {
			return err
		}
		for {
			if _, _, err := c.c.ReadMessage(); err != nil {
				if code := closeCode(err); code != gorilla.CloseNormalClosure && code != int(broadcast.CloseSlowConsumer) {
					return fmt.Errorf("close handshake: %w", err)
				}
				return nil
			}
		}
	case *coderClient:
		// coder waits up to 5 s for the echo and discards messages.
		if err := c.c.Close(websocket.StatusNormalClosure, "bye"); err != nil &&
			websocket.CloseStatus(err) != websocket.StatusCode(broadcast.CloseSlowConsumer) {
			return fmt.Errorf("close handshake: %w", err)
		}
		return nil
	}
	panic("unknown client type")
}

// runChaosSubscriber subscribes to topics and keeps dropping and
// re-establishing its subscriptions until it has every topic's end marker.
func runChaosSubscriber(ts *testServer, cc *chaosConfig, id int, kind string, topics []string, seed uint64,
	epochs *sync.Map) (res chaosResult) {
	rng := rand.New(rand.NewPCG(seed, uint64(id)))
	res.topics = make(map[string]*chaosTopic, len(topics))
	for _, tp := range topics {
		res.topics[tp] = &chaosTopic{}
	}
	var query string
	var inMsg []string
	var state map[string]int
	fail := func(format string, args ...any) chaosResult {
		var sb strings.Builder
		for _, tp := range topics {
			ct := res.topics[tp]
			st, ok := state[tp]
			fmt.Fprintf(&sb, " %s{next %d, done %v, state %d %v}", tp, ct.next, ct.done, st, ok)
		}
		res.err = fmt.Errorf("subscriber %d (%s), connection %d (/ws?%s, subscribe messages %v; topics%s): %s",
			id, kind, res.conns, query, inMsg, sb.String(), fmt.Sprintf(format, args...))
		return res
	}
	allDone := func() bool {
		for _, ct := range res.topics {
			if !ct.done {
				return false
			}
		}
		return true
	}

	for !allDone() {
		// Some topics in the URL, the rest in subscribe messages; each
		// with since once the subscriber has had a reply for it.
		order := rng.Perm(len(topics))
		var inURL []string
		inMsg = nil
		style := rng.IntN(3) // 0: all in the URL, 1: all in messages, 2: mixed
		for _, k := range order {
			if style == 0 || (style == 2 && rng.IntN(2) == 0) {
				inURL = append(inURL, topics[k])
			} else {
				inMsg = append(inMsg, topics[k])
			}
		}
		state = make(map[string]int, len(topics))
		var sinces []string
		for _, tp := range inURL {
			if ct := res.topics[tp]; ct.next > 0 {
				item := fmt.Sprintf("%s:%d", tp, ct.next-1)
				if rng.IntN(2) == 0 {
					item += "@" + ct.epoch
				}
				sinces = append(sinces, item)
				state[tp] = chaosSince
			} else {
				state[tp] = chaosFresh
			}
		}
		query = ""
		if len(inURL) > 0 {
			query = "topics=" + strings.Join(inURL, ",")
			if len(sinces) > 0 {
				query += "&since=" + strings.Join(sinces, ",")
			}
		}
		c, tcp, err := chaosDial(kind, ts.addr, query)
		if err != nil {
			return fail("dial /ws?%s: %v", query, err)
		}
		res.conns++
		for _, tp := range inMsg {
			ct := res.topics[tp]
			msg := subscribeMsg(tp)
			state[tp] = chaosFresh
			if ct.next > 0 {
				state[tp] = chaosSince
				msg = subscribeSinceMsg(tp, ct.next-1)
				if rng.IntN(2) == 0 {
					msg = fmt.Sprintf(`{"type":"subscribe","topic":%q,"since":%d,"epoch":%q}`, tp, ct.next-1, ct.epoch)
				}
			}
			if err := c.WriteText([]byte(msg)); err != nil {
				c.Close()
				return fail("subscribe: %v", err)
			}
		}

		// This connection lives for up to budget messages and, while
		// publishers publish, up to a random time.
		budget := rng.IntN(50)
		var deadline time.Time
		chaotic := cc.publishing.Load()
		if chaotic {
			deadline = time.Now().Add(time.Duration(5+rng.IntN(200)) * time.Millisecond)
		} else {
			deadline = time.Now().Add(waitTimeout)
		}
		mode := chaosDrop(rng.IntN(int(chaosDropReadDeadline)))
		healthy := true // no read deadline passed: the connection is intact
		for n := 0; n < budget && !allDone(); n++ {
			d := time.Until(deadline)
			if d <= 0 && chaotic {
				mode, healthy = chaosDropReadDeadline, false
				break
			}
			p, err := c.ReadText(d)
			if err != nil {
				// coder closes the connection when the deadline passes,
				// and the read may then fail with that instead.
				timedOut := chaosIsTimeout(err) || errors.Is(err, net.ErrClosed) && !time.Now().Before(deadline)
				switch {
				case timedOut && chaotic:
					mode, healthy = chaosDropReadDeadline, false
				case timedOut:
					c.Close()
					return fail("no message for %v after the publishers stopped", waitTimeout)
				case closeCode(err) == int(broadcast.CloseSlowConsumer):
					// Possible on a loaded machine; since recovers it
					// like any other drop.
					mode, healthy = chaosDropSlowConsumer, false
				default:
					c.Close()
					return fail("read (close code %d): %v", closeCode(err), err)
				}
				break
			}
			f, err := parseFrame(p)
			if err != nil {
				c.Close()
				return fail("%v", err)
			}
			ct := res.topics[f.Topic]
			st, subscribed := state[f.Topic]
			switch {
			case ct == nil || !subscribed:
				err = fmt.Errorf("frame for a topic not subscribed: %s", f)
			case f.isMessage() && st != chaosLive:
				err = fmt.Errorf("message before the subscribed reply: %s", f)
			case f.isMessage() && f.Seq != ct.next:
				err = fmt.Errorf("%s: got seq %d, want %d (gap or duplicate)", f.Topic, f.Seq, ct.next)
			case f.isMessage():
				ct.data = append(ct.data, string(f.Data))
				ct.next++
				ct.done = ct.done || string(f.Data) == endMarker
			case f.Type != "subscribed":
				err = fmt.Errorf("unexpected frame %s", f)
			case st == chaosLive:
				err = fmt.Errorf("a second subscribed reply: %s", f)
			case st == chaosFresh && f.Recovered:
				err = fmt.Errorf("subscribe without since, recovered: %s", f)
			case st == chaosFresh:
				ct.first, ct.next = f.Seq+1, f.Seq+1
			case !f.Recovered:
				err = fmt.Errorf("since within history, not recovered: %s", f)
			case f.Seq != ct.next-1:
				err = fmt.Errorf("reply seq %d for since %d: %s", f.Seq, ct.next-1, f)
			default:
				res.recoveries++
			}
			if err == nil && f.Type == "subscribed" {
				state[f.Topic] = chaosLive
				ct.epoch = f.Epoch
				if e, _ := epochs.LoadOrStore(f.Topic, f.Epoch); e != f.Epoch {
					err = fmt.Errorf("epoch %s, another subscriber got %s: %s", f.Epoch, e, f)
				}
			}
			if err != nil {
				c.Close()
				return fail("%v", err)
			}
			if !res.ready {
				res.ready = true
				for _, ct := range res.topics {
					res.ready = res.ready && ct.next > 0
				}
				if res.ready {
					cc.ready.Add(1)
				}
			}
		}
		if allDone() && healthy {
			mode = chaosDropClean
		}
		res.drops[mode]++

		switch mode {
		case chaosDropClean:
			if err := chaosCloseClean(c); err != nil {
				return fail("%v", err)
			}
		case chaosDropAbrupt, chaosDropReadDeadline, chaosDropSlowConsumer:
			c.Close()
		case chaosDropReset:
			_ = tcp.SetLinger(0)
			c.Close()
		case chaosDropMidFrame:
			// A publish cut short anywhere, header included: it must
			// publish nothing (every seq is checked against the ledger).
			msg := publishMsg(topics[0], fmt.Sprintf(`{"ghost":%d}`, id))
			fr := clientFrame(opText, len(msg), []byte(msg))
			_ = tcp.SetWriteDeadline(time.Now().Add(waitTimeout))
			_, _ = tcp.Write(fr[:1+rng.IntN(len(fr)-1)])
			if rng.IntN(2) == 0 {
				_ = tcp.SetLinger(0)
			}
			c.Close()
		case chaosDropCloseReset:
			_ = tcp.SetWriteDeadline(time.Now().Add(waitTimeout))
			_, _ = tcp.Write(clientFrame(opClose, 2, []byte{0x03, 0xe8}))
			_ = tcp.SetLinger(0)
			c.Close()
		}
		// A pause, so that publishers get ahead and there is something to
		// recover.
		time.Sleep(time.Duration(rng.IntN(10)) * time.Millisecond)
	}
	return res
}

// runChaosPublisher publishes to random topics until cc.publishFor has
// passed and every subscriber is ready: via Hub.Publish, POST /publish or WebSocket publish messages,
// recording each seq and data in led.
func runChaosPublisher(ts *testServer, cc *chaosConfig, p int, via string, seed uint64, led *ledger, subscribers int) (int, error) {
	rng := rand.New(rand.NewPCG(seed, uint64(1000+p)))
	var c wsClient
	if kind, ok := strings.CutPrefix(via, "ws-"); ok {
		var err error
		if c, _, err = dial(kind, ts.addr, ""); err != nil {
			return 0, err
		}
		defer c.Close()
	}
	n := 0
	for {
		if el := time.Since(cc.start); el >= cc.publishFor &&
			(int(cc.ready.Load()) == subscribers || el >= cc.publishFor+waitTimeout) {
			break
		}
		topic := cc.topics[rng.IntN(len(cc.topics))]
		size := rng.IntN(200)
		if rng.IntN(30) == 0 {
			size = 8<<10 + rng.IntN(8<<10) // a frame that takes several reads
		}
		data := fmt.Sprintf(`{"p":%d,"i":%d,"pad":"%s"}`, p, n, strings.Repeat("c", size))
		var seq uint64
		var err error
		switch via {
		case "hub":
			seq, err = ts.hub.Publish(topic, []byte(data))
			// A steady stream, not a flood: the point is recovery.
			time.Sleep(time.Duration(200+rng.IntN(800)) * time.Microsecond)
		case "http":
			seq, err = ts.postSeq(topic, []byte(data))
		default:
			if err = c.WriteText([]byte(publishMsg(topic, data))); err != nil {
				break
			}
			var f frame
			if f, err = readFrame(c); err == nil && (f.Type != "published" || f.Topic != topic || f.Seq == 0) {
				err = fmt.Errorf("publish to %s: reply %s", topic, f)
			}
			seq = f.Seq
		}
		if err == nil {
			err = led.record(topic, seq, data)
		}
		if err != nil {
			return n, fmt.Errorf("publisher %d (%s): %w", p, via, err)
		}
		n++
	}
	return n, nil
}

func runChaos(t *testing.T, seed uint64) {
	began := time.Now()
	rng := rand.New(rand.NewPCG(seed, 0))
	const (
		nTopics  = 4
		nClients = 16
	)
	hcfg := broadcast.Config{
		// Everything stays in history: every gap is recoverable.
		HistorySize: 1 << 20,
		HistoryAge:  time.Hour,
		Shards:      1 + rng.IntN(4),
	}
	scfg := wsconn.Config{Workers: []int{1, 2, 4}[rng.IntN(3)]}
	ts := startHub(t, hcfg, scfg)
	t.Logf("%d shards, %d workers", hcfg.Shards, scfg.Workers)

	cc := &chaosConfig{publishFor: 2 * time.Second}
	for i := range nTopics {
		cc.topics = append(cc.topics, fmt.Sprintf("chaos-%d", i))
	}
	cc.publishing.Store(true)
	cc.start = time.Now()

	var led ledger
	vias := []string{"hub", "hub", "http", "ws-gorilla", "ws-coder"}
	pubCounts := make([]int, len(vias))
	pubErrs := make([]error, len(vias))
	var pubs sync.WaitGroup
	for p, via := range vias {
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			pubCounts[p], pubErrs[p] = runChaosPublisher(ts, cc, p, via, seed, &led, nClients)
		}()
	}

	var epochs sync.Map
	results := make([]chaosResult, nClients)
	topicsOf := make([][]string, nClients)
	var subs sync.WaitGroup
	for i := range nClients {
		for _, k := range rng.Perm(nTopics)[:1+rng.IntN(3)] {
			topicsOf[i] = append(topicsOf[i], cc.topics[k])
		}
		kind := clientKinds[i%len(clientKinds)]
		// Some subscribe before anything is published, the others join
		// the stream at random moments.
		delay := time.Duration(rng.IntN(int(cc.publishFor/2))) * time.Duration(i%2)
		cseed := rng.Uint64()
		subs.Add(1)
		go func() {
			defer subs.Done()
			time.Sleep(delay)
			results[i] = runChaosSubscriber(ts, cc, i, kind, topicsOf[i], cseed, &epochs)
			if !results[i].ready {
				cc.ready.Add(1) // failed: the publishers wait no more for it
			}
		}()
	}

	pubs.Wait()
	require.NoError(t, errors.Join(pubErrs...))
	cc.publishing.Store(false)
	// The end marker is the last message of every topic.
	final := make(map[string]uint64, nTopics)
	for _, tp := range cc.topics {
		seq := ts.publish(t, tp, endMarker)
		require.NoError(t, led.record(tp, seq, endMarker))
		final[tp] = seq
	}
	subsDone := make(chan struct{})
	go func() { subs.Wait(); close(subsDone) }()
	select {
	case <-subsDone:
	case <-time.After(3 * waitTimeout):
		// The server's shutdown (cleanup) ends the subscribers' reads.
		t.Fatalf("subscribers did not finish; hub %+v", ts.hub.Stats())
	}

	// Every seq went to exactly one known publish: 1..final, no gap, and
	// none to a half-sent publish frame.
	total := 0
	for _, tp := range cc.topics {
		m := led.data[tp]
		require.Len(t, m, int(final[tp]), "topic %s: seqs given out", tp)
		for s := uint64(1); s <= final[tp]; s++ {
			require.Contains(t, m, s, "topic %s: seq %d given to no known publish", tp, s)
		}
		total += len(m)
	}

	var drops [nChaosDrops]int
	conns, recoveries, received := 0, 0, 0
	for i, r := range results {
		require.NoError(t, r.err)
		for tp, ct := range r.topics {
			require.Equal(t, final[tp]+1, ct.next, "subscriber %d, %s: up to the end marker", i, tp)
			require.Positive(t, ct.first, "subscriber %d, %s", i, tp)
			require.Len(t, ct.data, int(final[tp]-ct.first+1), "subscriber %d, %s: each message once", i, tp)
			for k, d := range ct.data {
				s := ct.first + uint64(k)
				require.Equal(t, led.data[tp][s], d, "subscriber %d: data of %s:%d", i, tp, s)
			}
			received += len(ct.data)
		}
		for m, n := range r.drops {
			drops[m] += n
		}
		conns += r.conns
		recoveries += r.recoveries
	}
	assert.Positive(t, recoveries, "subscribers recovered with since")

	// Every connection, however it ended, is released with its
	// subscriptions.
	require.Eventually(t, func() bool {
		st := ts.hub.Stats()
		return st.Clients == 0 && st.Subscriptions == 0 && ts.srv.Stats().WebSockets == 0
	}, waitTimeout, 5*time.Millisecond, "connections and subscriptions released: hub %+v, server %+v",
		ts.hub.Stats(), ts.srv.Stats())
	assert.Zero(t, ts.srv.QueuedBytes())

	var dropLog []string
	for m, n := range drops {
		dropLog = append(dropLog, fmt.Sprintf("%s %d", chaosDropNames[m], n))
	}
	st := ts.hub.Stats()
	t.Logf("%d messages published (%v per publisher), %d received by %d subscribers over %d connections "+
		"(%d since-subscribes recovered, %d messages replayed); drops: %s; %v",
		total, pubCounts, received, nClients, conns, recoveries, st.Replayed, strings.Join(dropLog, ", "),
		time.Since(began).Round(time.Millisecond))
}
