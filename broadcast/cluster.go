package broadcast

import (
	"context"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/gobwas/ws"
)

// The hub's side of a cluster (Config.Broker). A publish is not appended
// here but stored through the broker, which assigns its seq; every node,
// this one included, appends it when the broker delivers it to the topic's
// watch. A node watches a topic while it has subscribers there: the first
// subscribe starts the watch (startWatch, off every lock) from the topic's
// last stored message, and the subscribes that come meanwhile wait for it,
// so that their seqs and the messages after them have no gap; the sweep
// (expireLoop) stops it once the topic has none.

// publishThrough is Publish in a cluster, after the checks.
func (h *Hub) publishThrough(topic string, data []byte) (uint64, error) {
	if !h.enter() {
		return 0, ErrClosed
	}
	// Not held across the round trip, which posts nothing to a shard:
	// Close, and every enter behind it, would wait for NATS.
	h.exit()
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	seq, err := h.cfg.Broker.Publish(ctx, topic, data)
	if err != nil {
		h.log.Warn("cluster publish failed", "topic", topic, "err", err)
		return 0, fmt.Errorf("%w: %w", ErrUnavailable, err)
	}
	h.published.Add(1)
	return seq, nil
}

// awaitDelivery waits until this node has delivered seq, a message it
// published to topic through the broker, to the topic's subscribers here, if
// it watches the topic: called for a publisher subscribed to the topic, its
// reply then follows the message, as on one node. The message comes back
// through the watch, after the broker's ack that gave seq. It gives up at
// brokerTimeout, or as the watch ends or the hub closes. It runs on the
// publish's own goroutine, with no lock held.
func (h *Hub) awaitDelivery(topic string, seq uint64) {
	h.mu.RLock()
	t := h.topics[topic]
	h.mu.RUnlock()
	if t == nil {
		return
	}
	t.mu.Lock()
	tw := t.watch
	if t.dead || tw == nil || tw.starting() || t.seq >= seq {
		// No watch running (its start's replies and replays follow what
		// it takes in), or the message is delivered already.
		t.mu.Unlock()
		return
	}
	done := make(chan struct{})
	tw.published = append(tw.published, pubWaiter{seq: seq, done: done})
	t.mu.Unlock()
	timer := time.NewTimer(brokerTimeout)
	defer timer.Stop()
	select {
	case <-done:
		return
	case <-timer.C:
	case <-h.stop:
	}
	// Given up: its wait goes, or a watch that stalls would gather one
	// for every publish.
	t.mu.Lock()
	tw.published = slices.DeleteFunc(tw.published, func(p pubWaiter) bool { return p.done == done })
	t.mu.Unlock()
}

// startWatch starts tw, the broker's watch of t, for the subscribes waiting
// in it, and answers them. It runs on a goroutine of its own, since
// the broker's round trips may take up to brokerTimeout: no worker, no
// topic lock and not the hub's gate is held meanwhile, so other clients,
// publishes and Close go on. The broker's deliveries wait until the
// backlog is in (see deliver). If the watch cannot start, the waiting
// clients are closed with CloseClusterUnavailable, to come back with since:
// they were counted as subscribed, and only their own turns may undo that.
func (h *Hub) startWatch(t *Topic, tw *topicWatch) {
	ctx, cancel := context.WithTimeout(context.Background(), brokerTimeout)
	defer cancel()
	go func() {
		select {
		case <-h.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	w, backlog, err := h.cfg.Broker.Watch(ctx, t.name, func(m BrokerMessage) { h.deliver(t, tw, m) })
	if err != nil {
		h.log.Warn("cluster watch failed", "topic", t.name, "err", err)
	}
	entered := h.enter()
	var rooms []<-chan struct{}
	t.mu.Lock()
	waiters := tw.waiters
	tw.waiters = nil
	// Forgotten meanwhile (every waiter left): the topic is dead, and its
	// watch gone.
	started := err == nil && w != nil && entered && !t.dead && t.watch == tw
	if started {
		tw.w = w
		h.takeBacklogLocked(t, backlog)
		for _, wt := range waiters {
			if room, _, _ := wt.cl.joinLocked(t, wt.id, wt.since, wt.epoch, true, wt.wait, nil); room != nil {
				rooms = append(rooms, room)
			}
		}
	}
	if !started && t.watch == tw {
		t.watch = nil // the next subscribe tries again
	}
	t.mu.Unlock()
	close(tw.ready)
	if entered {
		h.exit()
	}
	if started {
		h.budget.trim() // past MaxHistoryBytes after the backlog came in
		waitRoom(rooms...)
		return
	}
	if w != nil {
		w.Stop()
	}
	code, reason := CloseClusterUnavailable, "cluster unavailable: reconnect with since"
	if !entered {
		code, reason = ws.StatusGoingAway, "server shutting down"
	}
	for _, wt := range waiters {
		wt.cl.conn.Close(code, reason)
	}
}

// takeBacklogLocked takes t's history, seq and epoch from backlog, what the
// broker holds of t, so that a subscriber recovers on this node what any
// node published. t.mu is held.
func (h *Hub) takeBacklogLocked(t *Topic, backlog []BrokerMessage) {
	t.seq, t.epoch = 0, ""
	for _, m := range backlog {
		marker := len(m.Data) == 0
		if m.Epoch != t.epoch || m.Seq != t.seq+1 && !(marker && m.Seq == t.seq) {
			// Older messages are gone: history starts here.
			h.resetLocked(t, m.Epoch)
		}
		t.seq = m.Seq
		if marker || h.cfg.HistorySize <= 0 {
			continue
		}
		frame := compile(t.name, m.Seq, m.Data)
		freed := t.history.push(entry{seq: m.Seq, at: m.Time.UnixNano(), frame: frame}, h.cfg.HistorySize)
		h.budget.charge(t, m.Seq, len(frame), freed)
	}
	t.floor.Store(t.history.floor(t.seq))
}

// deliver appends m, a message the broker stored, to t and fans it out; tw
// is the watch that delivers it. Messages come in seq order; one already
// appended is skipped. Behind shards slow the broker's delivery down, as
// they do a publisher, once the gate and every lock are let go.
func (h *Hub) deliver(t *Topic, tw *topicWatch, m BrokerMessage) {
	<-tw.ready // the backlog first: see startWatch
	if !h.enter() {
		return
	}
	rooms := h.deliverEntered(t, tw, m)
	h.exit()
	waitRoom(rooms...)
}

// deliverEntered is deliver inside the gate; it returns the rooms to wait
// for.
func (h *Hub) deliverEntered(t *Topic, tw *topicWatch, m BrokerMessage) (rooms []<-chan struct{}) {
	now := time.Now()
	var gap uint64
	t.mu.Lock()
	switch {
	case t.dead || t.watch != tw:
		// Forgotten (the watch is being stopped): a new topic and
		// watch take over if subscribers come back.
		t.mu.Unlock()
		return nil
	case m.Restart || m.Epoch != t.epoch:
		// The topic's history started afresh in the broker (it all aged
		// out while every node watching it was cut off, or NATS lost
		// its store): this node's topic, history and subscribers' seqs
		// are the old epoch's. The subscribers are closed, to come back
		// with since and be told what they lost, and the topic is
		// forgotten, for a new one and a new watch to start from what
		// the broker holds.
		h.log.Warn("cluster topic started afresh: closing its subscribers", "topic", t.name, "epoch", m.Epoch, "was", t.epoch, "seq", t.seq)
		rooms, w := h.restartLocked(t)
		t.mu.Unlock()
		h.mu.Lock()
		if h.topics[t.name] == t {
			delete(h.topics, t.name)
		}
		h.mu.Unlock()
		go w.Stop() // not on the watch's own goroutine, which runs this
		return rooms
	case len(m.Data) == 0:
		// A marker of this epoch: it repeats a seq this node has, or, if
		// it missed messages, the next message shows the gap.
		t.mu.Unlock()
		return nil
	case m.Seq <= t.seq:
		t.mu.Unlock()
		return nil
	case m.Seq > t.seq+1:
		// Messages the broker no longer held when this node caught up
		// (it was cut off from NATS for longer than history lasts):
		// subscribers are told they lost them, and history here cannot
		// recover across them.
		h.log.Warn("cluster topic skipped messages", "topic", t.name, "from", t.seq+1, "to", m.Seq-1)
		h.resetLocked(t, t.epoch)
		gap = t.seq + 1
	}
	t.seq = m.Seq - 1
	rooms = h.appendLocked(t, m.Data, now, gap)
	tw.releaseLocked(t.seq)
	t.mu.Unlock()
	h.budget.trim()
	return rooms
}

// restartLocked kills t, whose history started afresh in the broker: it
// drops t's history, closes its subscribers through their shards, and
// returns the shards' rooms and t's watch, for the caller to stop. t.mu is
// held.
func (h *Hub) restartLocked(t *Topic) (rooms []<-chan struct{}, w Watch) {
	t.dead = true
	t.floor.Store(math.MaxUint64)
	h.budget.release(t.history.dropOldest(t.seq))
	t.watch.releaseLocked(math.MaxUint64)
	w, t.watch = t.watch.w, nil
	for i, s := range h.shards {
		if t.inShard[i].Load() > 0 {
			if room := s.post(op{kind: opRestart, topic: t}); room != nil {
				rooms = append(rooms, room)
			}
		}
	}
	return rooms, w
}

// resetLocked drops t's history and sets its epoch. t.mu is held.
func (h *Hub) resetLocked(t *Topic, epoch string) {
	h.budget.release(t.history.dropOldest(t.seq))
	t.epoch = epoch
}

// unusedLocked reports whether the sweep may forget t: a topic with
// neither subscribers nor history, or in a cluster, whose history the
// broker keeps, with no subscribers. t.mu is held.
func (h *Hub) unusedLocked(t *Topic) bool {
	if t.hasSubscribers() {
		return false
	}
	return h.cfg.Broker != nil || t.history.n == 0
}
