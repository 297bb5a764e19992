package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout/fanout/broadcast"
)

// Watch gives topic an epoch if it holds no message, then starts an
// ordered JetStream consumer of the topic's subject from its first stored
// message: one consumer per topic per node, whatever its subscribers. The
// messages stored before the consumer started are returned as the backlog;
// those after go to deliver. The consumer re-creates itself after a
// disconnect from where it was, so messages come in stream order, which is
// seq order within a topic.
func (b *Broker) Watch(ctx context.Context, topic string, deliver func(broadcast.BrokerMessage)) (broadcast.Watch, []broadcast.BrokerMessage, error) {
	gen := b.outage()
	if !b.connected.Load() {
		// At once: a subscriber waits for this, on a worker of the node.
		return nil, nil, fmt.Errorf("cluster: watch %s: %w", topic, nats.ErrDisconnected)
	}
	subj := b.subject(topic)
	if err := b.ensureEpoch(ctx, subj); err != nil {
		return nil, nil, err
	}
	cons, err := b.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj},
		DeliverPolicy:  jetstream.DeliverAllPolicy,
		// A consumer that Stop left, or a node that died, leaves is
		// deleted by the server after this; the ordered consumer makes
		// itself anew if its own was deleted while disconnected.
		InactiveThreshold: consumerIdle,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("cluster: consume %s: %w", subj, err)
	}
	w := &watch{b: b, cons: cons, topic: topic, subj: subj, deliver: deliver, ready: make(chan struct{})}
	if info := cons.CachedInfo(); info == nil || info.NumPending == 0 {
		w.caughtUp = true // (the epoch's marker expired meanwhile)
		close(w.ready)
	}
	w.cc, err = cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			b.log.Warn("cluster: message without metadata", "subject", subj, "err", err)
			return
		}
		h, err := headOf(md.Sequence.Stream, m.Headers())
		if err != nil {
			// Not fanout's: skipped, but it may be the last of the
			// backlog.
			b.log.Warn("cluster: message skipped", "subject", subj, "err", err)
			w.skip(md.NumPending)
			return
		}
		b.heads.put(topic, h)
		bm := broadcast.BrokerMessage{Seq: h.seq, Epoch: h.epoch, Data: m.Data(), Time: md.Timestamp}
		if w.backfill(bm, h, md.Timestamp, md.NumPending) {
			return
		}
		deliver(bm)
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		// Missed heartbeats and re-creations while NATS is away: the
		// connection's own log says that, once.
		b.log.Debug("cluster: consumer", "subject", subj, "err", err)
	}))
	if err != nil {
		w.deleteConsumer(ctx)
		return nil, nil, fmt.Errorf("cluster: consume %s: %w", subj, err)
	}
	select {
	case <-w.ready:
	case <-ctx.Done():
		w.Stop()
		return nil, nil, fmt.Errorf("cluster: read the history of %s: %w", subj, ctx.Err())
	}
	w.mu.Lock()
	backlog := w.backlog
	w.backlog = nil
	last, quiet := w.last, time.Since(w.at) > b.cfg.HistoryAge/2
	w.mu.Unlock()
	if err := b.register(w, gen); err != nil {
		w.Stop()
		return nil, nil, fmt.Errorf("cluster: watch %s: %w", topic, err)
	}
	if quiet && last.stream != 0 {
		// Quiet for long already: kept now, not at keepLoop's next
		// tick, which may come after the last message has aged out.
		go b.keep(subj, last)
	}
	return w, backlog, nil
}

// errOvertaken refuses a watch that NATS was lost during the start of: what
// it read may be of a stream that is gone, and no disconnect marked it for
// the reconnect's check (see Broker.markWatches).
var errOvertaken = fmt.Errorf("NATS was lost while the watch started: %w", nats.ErrDisconnected)

// register enters w among the running watches, unless NATS was lost since
// outage gen, when its start began.
func (b *Broker) register(w *watch, gen uint64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.outages != gen {
		return errOvertaken
	}
	b.watches[w] = struct{}{}
	return nil
}

// watch is one topic's consumer. Until it has caught up with what the
// stream held when it started, what it receives is kept as the backlog.
type watch struct {
	b           *Broker
	cons        jetstream.Consumer
	cc          jetstream.ConsumeContext
	topic, subj string
	deliver     func(broadcast.BrokerMessage)
	ready       chan struct{} // closed once caught up

	mu       sync.Mutex
	caughtUp bool
	backlog  []broadcast.BrokerMessage
	last     head      // the last message received
	at       time.Time // when it was stored
	// unchecked: NATS was lost since, and a reconnect has not yet checked
	// that it still holds last (see Broker.markWatches); no keep marker
	// meanwhile, which could carry a lost stream's head into a new one.
	unchecked bool
}

// backfill notes m, whose head is h, stored at stored, as the last message
// received; it keeps m as backlog and reports true until the watch has
// caught up: until a message with nothing pending after it.
func (w *watch) backfill(m broadcast.BrokerMessage, h head, stored time.Time, pending uint64) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Its age counts from when it was stored, which may be long before a
	// watch that starts now receives it (never later than now: a NATS
	// clock ahead of this one would postpone the keep).
	w.last, w.at = h, stored
	if now := time.Now(); stored.After(now) {
		w.at = now
	}
	if w.caughtUp {
		return false
	}
	w.backlog = append(w.backlog, m)
	if pending == 0 {
		w.caughtUp = true
		close(w.ready)
	}
	return true
}

// skip notes a message that is not fanout's, pending others after it: the
// watch has caught up if none.
func (w *watch) skip(pending uint64) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.caughtUp && pending == 0 {
		w.caughtUp = true
		close(w.ready)
	}
}

// consumerIdle is how long the server keeps a consumer nobody pulls from.
const consumerIdle = 30 * time.Second

// Stop stops the consumer and deletes it from the server in the
// background: it is not left to linger for consumerIdle.
func (w *watch) Stop() {
	w.b.mu.Lock()
	delete(w.b.watches, w)
	w.b.mu.Unlock()
	w.cc.Stop()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		w.deleteConsumer(ctx)
	}()
}

func (w *watch) deleteConsumer(ctx context.Context) {
	info := w.cons.CachedInfo()
	if info == nil || !w.b.connected.Load() {
		return // the server deletes it after consumerIdle
	}
	if err := w.b.js.DeleteConsumer(ctx, w.b.cfg.Stream, info.Name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		w.b.log.Debug("cluster: delete consumer", "consumer", info.Name, "err", err)
	}
}

// ensureEpoch stores a marker, seq 0 with a new epoch and no data, on subj
// if it holds no message, so that every node hands its subscribers the
// same epoch, which the topic's first message then continues. If subj
// holds a message, JetStream refuses the marker.
func (b *Broker) ensureEpoch(ctx context.Context, subj string) error {
	msg := &nats.Msg{Subject: subj, Header: nats.Header{}}
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, "0")
	msg.Header.Set(seqHeader, "0")
	msg.Header.Set(epochHeader, newEpoch())
	_, err := b.js.PublishMsg(ctx, msg)
	if err != nil && !wrongLastSeq(err) {
		return fmt.Errorf("cluster: start the epoch of %s: %w", subj, err)
	}
	return nil
}

// keepLoop keeps the topics watched here from starting afresh while they
// have subscribers. JetStream drops a message after the history age
// (MaxAge), so a topic quiet for that long would hold nothing, and its next
// message would take seq 1 in a new epoch under subscribers that have seq
// N. Before that, a marker that repeats the last message's seq and epoch,
// with no data, is stored after it (with Nats-Expected-Last-Subject-Sequence,
// so that of several nodes one stores it and a publish in between wins);
// the next message continues from it. Up to keepsInFlight markers are
// stored at once.
func (b *Broker) keepLoop() {
	defer close(b.done)
	age := b.cfg.HistoryAge
	tick := time.NewTicker(max(age/4, 10*time.Millisecond))
	defer tick.Stop()
	var due []*watch
	keeps := make(chan struct{}, keepsInFlight)
	for {
		select {
		case <-b.stop:
			return
		case <-tick.C:
		}
		due = due[:0]
		b.mu.Lock()
		for w := range b.watches {
			due = append(due, w)
		}
		b.mu.Unlock()
		var wg sync.WaitGroup
		for _, w := range due {
			select {
			case <-b.stop:
				wg.Wait()
				return
			default:
			}
			w.mu.Lock()
			last, quiet := w.last, time.Since(w.at) > age/2 && !w.unchecked
			w.mu.Unlock()
			if quiet && last.stream != 0 && b.connected.Load() {
				keeps <- struct{}{}
				wg.Go(func() {
					defer func() { <-keeps }()
					b.keep(w.subj, last)
				})
			}
		}
		wg.Wait()
		clear(due)
	}
}

// keepsInFlight bounds the markers keepLoop stores at once. One at a time,
// each took a round trip to NATS, and over a slow link the quiet topics at
// the end of a long pass aged out before their turn.
const keepsInFlight = 16

// keep stores the marker of last on subj.
func (b *Broker) keep(subj string, last head) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	msg := &nats.Msg{Subject: subj, Header: nats.Header{}}
	msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last.stream, 10))
	msg.Header.Set(seqHeader, strconv.FormatUint(last.seq, 10))
	msg.Header.Set(epochHeader, last.epoch)
	if _, err := b.js.PublishMsg(ctx, msg); err != nil && !wrongLastSeq(err) {
		b.log.Warn("cluster: keep a quiet topic", "subject", subj, "err", err)
	}
}
