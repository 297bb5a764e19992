package broadcast

import "time"

// Listed returns how many clients the shards list for the topic named
// name. Call it only once h is closed: the lists are the shards' own.
func Listed(h *Hub, name string) int {
	n := 0
	for _, s := range h.shards {
		for t, cls := range s.subs {
			if t.name == name {
				n += len(cls)
			}
		}
	}
	return n
}

// ShrinkInboxes has each shard's inbox give back what bursts grew, as a
// quiet inbox does after the hub's expiry ticks, and waits until each
// has: a test that reads the heap counts what is kept, not what a burst
// left until the next tick.
func ShrinkInboxes(h *Hub) {
	for _, s := range h.shards {
		b := s.inbox
		b.mu.Lock()
		b.shrink = true
		b.mu.Unlock()
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
	for _, s := range h.shards {
		b := s.inbox
		for {
			b.mu.Lock()
			done := !b.shrink
			b.mu.Unlock()
			if done {
				break
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// WaitingOpenings returns how many connections' URL topics wait for a
// replay to be written (see openQuery).
func WaitingOpenings(h *Hub) int { return h.openings.len() }

// PublishWaits returns how many publishes' replies wait for the watch of
// the topic named name to deliver their messages (see Hub.awaitDelivery).
func PublishWaits(h *Hub, name string) int {
	h.mu.RLock()
	t := h.topics[name]
	h.mu.RUnlock()
	if t == nil {
		return 0
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.watch == nil {
		return 0
	}
	return len(t.watch.published)
}
