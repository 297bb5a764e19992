package broadcast_test

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// ledger records what was published: topic -> seq -> data.
type ledger struct {
	mu   sync.Mutex
	data map[string]map[uint64]string
}

func (l *ledger) record(topic string, seq uint64, data string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.data == nil {
		l.data = make(map[string]map[uint64]string)
	}
	m := l.data[topic]
	if m == nil {
		m = make(map[uint64]string)
		l.data[topic] = m
	}
	if old, dup := m[seq]; dup {
		return fmt.Errorf("seq %s:%d given to two publishes: %s and %s", topic, seq, old, data)
	}
	m[seq] = data
	return nil
}

const endMarker = `{"end":true}`

// subSpec describes one subscriber of the property test.
type subSpec struct {
	id     int
	kind   string
	topics []string
	viaURL bool // subscribe with ?topics= rather than subscribe messages
	churn  bool // unsubscribe and resubscribe with since, again and again
	seed   uint64
}

// Subscription states of a topic, as the subscriber sees them.
const (
	stSubscribing   = iota // subscribe sent, reply pending
	stSubscribed           // reply received
	stUnsubscribing        // unsubscribe sent; messages already queued may still come
	stUnsubscribed         // a later reply came through the shard: no more messages
)

// topicLog is what one subscriber saw of one topic.
type topicLog struct {
	state  int
	first  uint64            // first seq expected: the first reply's seq + 1
	next   uint64            // next seq expected; 0 until the first reply
	data   map[uint64]string // seq -> data, as received
	live   int               // messages since the last (re)subscribe
	churns int
	done   bool
}

// runSubscriber connects, subscribes and reads until it has the end marker
// of each of its topics. It checks every frame as it comes: each topic's
// messages are exactly next, next+1, ... where the subscribed reply sets
// next to seq+1; a churning subscriber unsubscribes, waits for a barrier
// (a subscribe to a topic of its own, which its shard answers after the
// unsubscribe), and resubscribes with since = the last seq it got, so that
// the union of what it gets over all its subscriptions is gapless and has
// no duplicate.
func runSubscriber(ts *testServer, spec subSpec, ready chan<- int) (map[string]*topicLog, error) {
	rng := rand.New(rand.NewPCG(spec.seed, uint64(spec.id)))
	logs := make(map[string]*topicLog, len(spec.topics))
	for _, tp := range spec.topics {
		logs[tp] = &topicLog{data: make(map[uint64]string)}
	}
	query := ""
	if spec.viaURL {
		query = "topics=" + strings.Join(spec.topics, ",")
	}
	c, _, err := dial(spec.kind, ts.addr, query)
	if err != nil {
		return logs, fmt.Errorf("dial: %w", err)
	}
	defer c.Close()
	if !spec.viaURL {
		for _, tp := range spec.topics {
			if err := c.WriteText([]byte(subscribeMsg(tp))); err != nil {
				return logs, err
			}
		}
	}
	barrier := fmt.Sprintf("sync-%d", spec.id)
	churnTopic := spec.topics[0]
	churnAfter := func() int { return 3 + rng.IntN(20) }
	threshold := churnAfter()
	isReady := false
	for {
		f, err := readFrame(c)
		if err != nil {
			return logs, fmt.Errorf("read (close code %d): %w", closeCode(err), err)
		}
		switch {
		case f.isMessage():
			tl := logs[f.Topic]
			switch {
			case tl == nil:
				return logs, fmt.Errorf("message of a topic never subscribed: %s", f)
			case tl.state == stUnsubscribed:
				return logs, fmt.Errorf("message after the unsubscribe took effect: %s", f)
			case tl.next == 0:
				return logs, fmt.Errorf("message before the first subscribed reply: %s", f)
			case tl.state == stSubscribing:
				return logs, fmt.Errorf("message before the subscribed reply of a resubscribe: %s", f)
			case f.Seq != tl.next:
				return logs, fmt.Errorf("%s: got seq %d, want %d (gap or duplicate)", f.Topic, f.Seq, tl.next)
			}
			tl.data[f.Seq] = string(f.Data)
			tl.next++
			if string(f.Data) == endMarker {
				tl.done = true
			}
			tl.live++
			if spec.churn && f.Topic == churnTopic && tl.state == stSubscribed && !tl.done &&
				tl.churns < 4 && tl.live >= threshold {
				tl.state = stUnsubscribing
				tl.churns++
				if err := c.WriteText([]byte(unsubscribeMsg(churnTopic))); err != nil {
					return logs, err
				}
				if err := c.WriteText([]byte(subscribeMsg(barrier))); err != nil {
					return logs, err
				}
			}

		case f.Type == "subscribed" && f.Topic == barrier:
			tl := logs[churnTopic]
			if tl.state != stUnsubscribing {
				return logs, fmt.Errorf("barrier reply in state %d: %s", tl.state, f)
			}
			tl.state = stUnsubscribed
			if err := c.WriteText([]byte(unsubscribeMsg(barrier))); err != nil {
				return logs, err
			}
			if tl.done {
				break // the end marker came in flight: stay unsubscribed
			}
			// Miss a few messages, or none.
			time.Sleep(time.Duration(rng.IntN(3)) * time.Millisecond)
			tl.state = stSubscribing
			tl.live = 0
			threshold = churnAfter()
			if err := c.WriteText([]byte(subscribeSinceMsg(churnTopic, tl.next-1))); err != nil {
				return logs, err
			}

		case f.Type == "subscribed":
			tl := logs[f.Topic]
			switch {
			case tl == nil:
				return logs, fmt.Errorf("reply for a topic never subscribed: %s", f)
			case tl.state != stSubscribing:
				return logs, fmt.Errorf("reply in state %d: %s", tl.state, f)
			case tl.next == 0: // the first subscription
				if f.Recovered {
					return logs, fmt.Errorf("first subscription without since, recovered: %s", f)
				}
				tl.first, tl.next = f.Seq+1, f.Seq+1
			default: // a resubscribe with since
				if !f.Recovered {
					return logs, fmt.Errorf("resubscribe with since not recovered: %s", f)
				}
				if f.Seq != tl.next-1 {
					return logs, fmt.Errorf("reply seq %d for since %d: %s", f.Seq, tl.next-1, f)
				}
			}
			tl.state = stSubscribed
			if !isReady {
				all := true
				for _, l := range logs {
					all = all && l.next != 0
				}
				if all {
					isReady = true
					ready <- spec.id
				}
			}

		case f.Type == "unsubscribed":
			// An acknowledgement of an unsubscribe; not needed here.

		default:
			return logs, fmt.Errorf("unexpected frame %s", f)
		}
		done := true
		for _, l := range logs {
			done = done && l.done
		}
		if done {
			return logs, nil
		}
	}
}

// TestPropertyFanOut runs 4 publishers (POST /publish and WebSocket publish
// messages, both libraries) over 5 topics to 50 subscribers (both
// libraries; 30 subscribed from the start, 10 joining in the middle, 10
// unsubscribing and resubscribing with since all along). Every subscriber
// must get every message of its topics exactly once, in seq order, with the
// data that was published; every seq is given to exactly one publish.
func TestPropertyFanOut(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	ts := startHub(t, broadcast.Config{}, wsconn.Config{})

	const (
		nTopics      = 5
		nPublishers  = 4
		perPublisher = 100
		nEarly       = 30
		nLate        = 10
		nChurn       = 10
	)
	topics := make([]string, nTopics)
	for i := range topics {
		topics[i] = fmt.Sprintf("prop-%d", i)
	}
	specs := make([]subSpec, nEarly+nLate+nChurn)
	for i := range specs {
		perm := rng.Perm(nTopics)[:1+rng.IntN(3)]
		var tps []string
		for _, k := range perm {
			tps = append(tps, topics[k])
		}
		specs[i] = subSpec{
			id:     i,
			kind:   clientKinds[i%len(clientKinds)],
			topics: tps,
			viaURL: rng.IntN(2) == 0,
			churn:  i >= nEarly+nLate,
			seed:   rng.Uint64(),
		}
	}

	type subResult struct {
		logs map[string]*topicLog
		err  error
	}
	results := make([]subResult, len(specs))
	ready := make(chan int, len(specs))
	var subs sync.WaitGroup
	start := func(i int) {
		subs.Add(1)
		go func() {
			defer subs.Done()
			logs, err := runSubscriber(ts, specs[i], ready)
			if err != nil {
				err = fmt.Errorf("subscriber %d (%s, topics %v, churn %v): %w", i, specs[i].kind, specs[i].topics, specs[i].churn, err)
			}
			results[i] = subResult{logs, err}
		}()
	}
	// On failure, the server's shutdown (cleanup) ends the readers.
	subsDone := make(chan struct{})
	waitReady := func(n int) {
		t.Helper()
		for range n {
			select {
			case <-ready:
			case <-time.After(waitTimeout):
				t.Fatal("subscribers not ready")
			}
		}
	}
	for i := range nEarly {
		start(i)
	}
	for i := nEarly + nLate; i < len(specs); i++ {
		start(i)
	}
	waitReady(nEarly + nChurn)

	var led ledger
	var published atomic.Int64
	pubErrs := make([]error, nPublishers)
	var pubs sync.WaitGroup
	for p := range nPublishers {
		prng := rand.New(rand.NewPCG(seed, uint64(100+p)))
		pubs.Add(1)
		go func() {
			defer pubs.Done()
			pubErrs[p] = func() error {
				var c wsClient
				if p%2 == 1 { // 1: gorilla, 3: coder
					var err error
					c, _, err = dial(clientKinds[p/2], ts.addr, "")
					if err != nil {
						return err
					}
					defer c.Close()
				}
				for i := range perPublisher {
					topic := topics[prng.IntN(nTopics)]
					data := fmt.Sprintf(`{"p":%d,"i":%d,"pad":"%s"}`, p, i, strings.Repeat("z", prng.IntN(300)))
					var seq uint64
					if c == nil {
						var err error
						if seq, err = ts.postSeq(topic, []byte(data)); err != nil {
							return err
						}
					} else {
						if err := c.WriteText([]byte(publishMsg(topic, data))); err != nil {
							return err
						}
						f, err := readFrame(c)
						if err != nil {
							return err
						}
						if f.Type != "published" || f.Topic != topic || f.Seq == 0 {
							return fmt.Errorf("publish to %s: reply %s", topic, f)
						}
						seq = f.Seq
					}
					if err := led.record(topic, seq, data); err != nil {
						return err
					}
					published.Add(1)
				}
				return nil
			}()
			if pubErrs[p] != nil {
				pubErrs[p] = fmt.Errorf("publisher %d: %w", p, pubErrs[p])
			}
		}()
	}

	// Late joiners subscribe in the middle of the stream.
	require.Eventually(t, func() bool { return published.Load() >= nPublishers*perPublisher/3 },
		waitTimeout, time.Millisecond)
	for i := nEarly; i < nEarly+nLate; i++ {
		start(i)
	}
	waitReady(nLate)
	pubs.Wait()
	require.NoError(t, errors.Join(pubErrs...))

	// The end marker is the last message of every topic.
	final := make(map[string]uint64, nTopics)
	for _, tp := range topics {
		seq := ts.publish(t, tp, endMarker)
		require.NoError(t, led.record(tp, seq, endMarker))
		final[tp] = seq
	}

	go func() { subs.Wait(); close(subsDone) }()
	select {
	case <-subsDone:
	case <-time.After(3 * waitTimeout):
		t.Fatal("subscribers did not finish")
	}

	// Every seq went to exactly one publish: 1..final, no gap.
	total := 0
	for _, tp := range topics {
		m := led.data[tp]
		require.Len(t, m, int(final[tp]), "topic %s: seqs given out", tp)
		for s := uint64(1); s <= final[tp]; s++ {
			require.Contains(t, m, s, "topic %s: seq %d never given out", tp, s)
		}
		total += len(m)
	}
	require.Equal(t, nPublishers*perPublisher+nTopics, total)

	churns, received := 0, 0
	for i, r := range results {
		require.NoError(t, r.err)
		for tp, tl := range r.logs {
			if i < nEarly {
				assert.Equal(t, uint64(1), tl.first, "subscriber %d, %s: subscribed before any publish", i, tp)
			}
			require.Equal(t, final[tp]+1, tl.next, "subscriber %d, %s: up to the end marker", i, tp)
			require.Len(t, tl.data, int(final[tp]-tl.first+1), "subscriber %d, %s: each message once", i, tp)
			for s, d := range tl.data {
				require.Equal(t, led.data[tp][s], d, "subscriber %d: data of %s:%d", i, tp, s)
			}
			churns += tl.churns
			received += len(tl.data)
		}
	}
	st := ts.hub.Stats()
	t.Logf("%d messages received over %d subscribers; %d churns; hub %+v", received, len(specs), churns, st)
	assert.Positive(t, churns, "the churning subscribers churned")
	assert.Equal(t, uint64(total), st.MessagesIn)
	assert.Zero(t, st.Drops)
	assert.Zero(t, st.SlowDisconnects)
}
