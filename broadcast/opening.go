package broadcast

import "sync"

// A connection's URL may ask to recover many topics at once
// (?topics=t0,...,t99&since=...). Each recovery's replay holds references
// to its messages until they are in the connection's write queue, so the
// URL's topics are subscribed one replay at a time: after a topic whose
// recovery replays, the rest wait until that replay is written (the
// shard asks for Drainer.OnDrain once it is queued), and the connection
// handles none of its messages meanwhile (wsconn.Conn.Hold). A client that
// does not read so holds one replay's references and the rest of its
// query, not a replay per topic.

// recoveryWait says whether a URL's next topics wait for a recovery's
// replay to be written.
type recoveryWait uint8

const (
	noWait       recoveryWait = iota
	waitIfReplay              // one of the URL's topics: if it replays
	waitAlways                // a cluster's waiter: the URL's next topics wait already
)

// openings holds the URL topics still to subscribe, per connection whose
// opening waits for a replay to be written.
type openings struct {
	mu sync.Mutex
	m  map[*client]opening
}

// opening is the rest of a connection's URL: its query and how many of its
// topics are subscribed.
type opening struct {
	query string
	done  int
}

func (o *openings) put(cl *client, op opening) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.m == nil {
		o.m = make(map[*client]opening)
	}
	o.m[cl] = op
}

// take removes and returns cl's opening, if it has one.
func (o *openings) take(cl *client) (opening, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	op, ok := o.m[cl]
	if ok {
		delete(o.m, cl)
	}
	return op, ok
}

// len returns the connections whose opening waits.
func (o *openings) len() int {
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(o.m)
}

// openQuery subscribes the topics of the URL's query after the first done,
// in order, and then the user's own. It stops after a topic whose recovery
// replays: the rest continue from continueOpening once that replay is
// written. waited says whether the opening waited before (it runs from
// OnDrain then, not OnOpen), and so holds the connection.
func (cl *client) openQuery(query string, done int, waited bool) {
	h := cl.hub()
	i, stopped := 0, false
	_ = h.walkQuery(query, cl.id, func(q querySub) {
		if stopped {
			return
		}
		i++
		if i <= done {
			return
		}
		var since *uint64
		if q.hasSince {
			// Only a since escapes (a cluster's waiter keeps it), and
			// not the whole querySub.
			s := q.since
			since = &s
		}
		stopped = cl.subscribe(request{topic: q.topic, opening: !waited, url: true}, since, q.epoch)
	})
	if stopped {
		if !waited {
			cl.conn.Hold() // released when the opening is done
		}
		h.openings.put(cl, opening{query: query, done: i})
		return
	}
	cl.subscribeOwn(!waited)
	if waited {
		_ = cl.conn.SendReplay(nil) // releases the opening's hold
	}
}

// continueOpening goes on with cl's opening, if it waits: the replay it
// waited for is written.
func (cl *client) continueOpening() {
	if op, ok := cl.hub().openings.take(cl); ok {
		cl.openQuery(op.query, op.done, true)
	}
}

// subscribeOwn subscribes an authenticated connection to its user's own
// topic, which every connection of the user hears; opening: from OnOpen.
func (cl *client) subscribeOwn(opening bool) {
	if cl.id.IsZero() {
		return
	}
	if own := cl.id.UserTopic(); cl.subscribed(own) < 0 {
		cl.subscribe(request{topic: own, opening: opening}, nil, "")
	}
}
