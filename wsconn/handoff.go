package wsconn

import "sync"

// handoffs queue the turns of connections for those that must not wait for
// a worker. Only the poller blocks on a full pool queue. A shard flushing,
// the sweep and an HTTP handler's goroutine may hold a connection's lock
// while they find a write failed or a deadline passed, and the workers may
// be waiting for them (a worker's publish waits for room in a shard's
// inbox); were they to block on the pool, workers and shards would wait for
// each other for good. They call Server.handoff instead: the turn goes to
// the pool if it has room, and otherwise onto a list that a goroutine of
// its own submits, blocking. That goroutine holds no lock, and the list
// holds a connection at most once (Conn.sched), so it is bounded by the
// connections held. The accept loop hands off each new connection's first
// turn the same way (see Server.open).
type handoffs struct {
	mu   sync.Mutex
	list []*Conn
	wake chan struct{} // capacity 1: a pending wake-up
	stop chan struct{}
	done chan struct{}
}

func newHandoffs() handoffs {
	return handoffs{wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
}

// handoff queues a turn for c, which the caller has claimed (see
// Conn.claimTurn), without blocking.
func (s *Server) handoff(c *Conn) {
	if s.pool.TrySubmit(c) {
		return
	}
	h := &s.handoffs
	h.mu.Lock()
	h.list = append(h.list, c)
	h.mu.Unlock()
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// runHandoffs submits the listed turns to the pool until stopHandoffs.
func (s *Server) runHandoffs() {
	h := &s.handoffs
	defer close(h.done)
	var batch []*Conn
	for {
		select {
		case <-h.wake:
		case <-h.stop:
			return
		}
		h.mu.Lock()
		batch, h.list = h.list, batch[:0]
		h.mu.Unlock()
		for i, c := range batch {
			s.pool.Submit(c)
			batch[i] = nil
		}
	}
}

// stopHandoffs stops runHandoffs. Call it once no connection is left: a
// listed turn keeps its connection registered until the turn runs, so the
// list is empty then.
func (s *Server) stopHandoffs() {
	close(s.handoffs.stop)
	<-s.handoffs.done
}
