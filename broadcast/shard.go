package broadcast

import (
	"slices"
	"sync/atomic"

	"github.com/fanout/fanout/wsconn"
)

// opKind is what a shard is asked to do.
type opKind uint8

const (
	opDeliver     opKind = iota // queue frame to topic's subscribers
	opSubscribe                 // queue replay and reply to cl, then add it to topic
	opUnsubscribe               // remove cl from topic
	opLeave                     // remove cl from all of topics
	opDrained                   // cl's queue emptied: tell it what it lost
	opReply                     // queue frame, a reply or an error, to cl
	opRestart                   // topic started afresh: close its subscribers (CloseTopicRestarted)
	opRateClose                 // close cl for its message rate (CloseRateLimit), behind its replies
	opStop                      // finish
)

// op is a message to a shard. Ops are values, so sending one allocates
// nothing.
type op struct {
	kind  opKind
	topic *Topic
	frame []byte // opDeliver: the message; opUnsubscribe, opReply: the reply
	// deflated: opDeliver, the message compressed for the subscribers that
	// take it, made by the first that needs it; nil: all get frame.
	deflated *deflatedFrame
	replay   [][]byte // opSubscribe
	held     bool     // opSubscribe: the connection is held until the replay is sent (wsconn.Conn.Hold)
	notify   bool     // opSubscribe: a URL's recovery; OnDrain once its replay is written (see openQuery)
	answered bool     // opSubscribe: the subscriber sent the reply itself, from OnOpen (wsconn.Conn.SendOnOpen)
	cl       *client
	topics   topicSet // opLeave

	seq       uint64       // opDeliver: the message's; opSubscribe: the seq after which messages follow, for the reply
	recovered bool         // opSubscribe
	id        []byte       // opSubscribe: the client's id for its request, raw JSON, echoed in the reply
	timer     *fanoutTimer // opDeliver: observes the fan-out latency
	// gap, opDeliver in a cluster: the first seq of the run before this
	// message that the node never received, as the broker no longer held
	// it; 0: none. Subscribers are told it as lost, before the message.
	gap uint64
}

const (
	maxOpsPerPass = 256 // ops handled before the batch's connections are flushed
)

// shard owns the subscriber lists of its slice of the connections. One
// goroutine runs it, so the lists need no lock, and every op reaches it in
// the order it was sent.
type shard struct {
	hub   *Hub
	idx   int // in Hub.shards
	inbox *inbox
	subs  map[*Topic][]*client

	batch   wsconn.Batch // this pass's frames, written at its end
	scratch []byte       // for replies

	// lost holds, under the Drop policy, the messages each client missed
	// because its queue was full and has not yet been told of. Until it is
	// told, the topic's later messages are skipped for it too, so that the
	// notice comes in seq order; it is told before the next message that
	// fits, or once its queue empties (wsconn.Conn.NotifyDrain).
	lost   map[*client][]lostRange
	lostIn map[*Topic]int // runs in lost, by topic: a delivery looks cl up only for a topic that has some

	deliveries      atomic.Uint64
	drops           atomic.Uint64
	slowDisconnects atomic.Uint64
	// Of deliveries, those that went compressed, and the bytes they saved.
	compressedDeliveries, bytesSaved atomic.Uint64
}

// lostRange is a run of seqs of a topic that a client missed.
type lostRange struct {
	topic    *Topic
	from, to uint64
}

func newShard(h *Hub, idx int) *shard {
	return &shard{hub: h, idx: idx, inbox: newInbox(h.cfg.InboxLen), subs: make(map[*Topic][]*client),
		lost: make(map[*client][]lostRange), lostIn: make(map[*Topic]int)}
}

// post sends o to the shard without blocking. When the shard is behind it
// returns a channel for the caller to wait on with waitRoom once it holds
// no lock (see inbox).
func (s *shard) post(o op) (room <-chan struct{}) { return s.inbox.put(o) }

// run handles ops until opStop. It takes what is in the inbox and flushes
// each touched connection once per maxOpsPerPass ops, so that under load
// one writev carries many frames.
func (s *shard) run() {
	for {
		ops := s.inbox.take()
		for i := range ops {
			if s.handle(ops[i]) {
				s.batch.Flush()
				return
			}
			if (i+1)%maxOpsPerPass == 0 {
				s.batch.Flush()
			}
		}
		s.batch.Flush()
	}
}

func (s *shard) handle(o op) (stop bool) {
	switch o.kind {
	case opDeliver:
		var n, dropped, compressed, saved uint64
		if o.gap > 0 {
			for _, cl := range s.subs[o.topic] {
				s.loseRun(cl, o.topic, o.gap, o.seq-1)
			}
		}
		untold := len(s.lost) > 0 && s.lostIn[o.topic] > 0
		for _, cl := range s.subs[o.topic] {
			if untold {
				if err := s.tell(cl, o.topic); err != nil {
					if s.hub.cfg.SlowConsumer == Disconnect {
						// No room for the notice of a cluster's gap (a
						// closed connection is not counted again).
						if err == wsconn.ErrQueueFull {
							s.slowConsumer(cl)
						}
						continue
					}
					s.lose(cl, o.topic, o.seq) // its notice first
					dropped++
					continue
				}
			}
			frame := o.frame
			if o.deflated != nil && cl.conn.Compressed() {
				if c := o.deflated.get(s.hub, o.frame); c != nil {
					frame = c
				}
			}
			switch s.queue(cl, frame) {
			case nil:
				n++
				if len(frame) < len(o.frame) {
					compressed++
					saved += uint64(len(o.frame) - len(frame))
				}
			case wsconn.ErrQueueFull:
				if s.hub.cfg.SlowConsumer == Drop {
					s.lose(cl, o.topic, o.seq)
					dropped++ // under Disconnect it is counted as a disconnect
				}
			}
		}
		s.deliveries.Add(n)
		if compressed > 0 {
			s.compressedDeliveries.Add(compressed)
			s.bytesSaved.Add(saved)
		}
		if dropped > 0 {
			s.drops.Add(dropped)
		}
		if o.timer != nil {
			o.timer.done(s.hub)
		}
	case opSubscribe:
		// The reply first, so that the client knows the epoch, and
		// whether what follows is a replay, before any message. It is
		// built here, in the shard's scratch buffer, and copied only if
		// the socket does not take it at once.
		if !o.answered {
			s.scratch = appendSubscribed(s.scratch[:0], o.topic.name, o.seq, o.topic.epoch, o.recovered, o.id)
			s.reply(o.cl, s.scratch, false)
		}
		if o.held {
			// History frames are shared, and go out as the socket drains,
			// charged against the queue limit: a client reading as fast
			// as it can recovers all that history holds, and one that
			// does not read holds one replay's references. This releases
			// the connection that client.subscribe held.
			if o.cl.conn.SendReplay(o.replay) == nil {
				s.hub.replayed.Add(uint64(len(o.replay)))
				if o.notify {
					o.cl.conn.NotifyDrain()
				}
			}
		}
		s.subs[o.topic] = append(s.subs[o.topic], o.cl)
	case opUnsubscribe:
		s.remove(o.topic, o.cl)
		if r, ok := s.forget(o.cl, o.topic); ok {
			// What it lost comes before the reply, past the limit if
			// need be, like the reply.
			s.reply(o.cl, appendDropped(nil, r), true)
		}
		s.reply(o.cl, o.frame, true)
	case opLeave:
		for t := range o.topics.all() {
			s.remove(t, o.cl)
		}
		s.forgetAll(o.cl)
	case opReply:
		// What it lost comes first, past the limit if need be: a
		// published reply must not come before the notice of the very
		// message it answers.
		for _, r := range s.forgetAll(o.cl) {
			s.reply(o.cl, appendDropped(nil, r), true)
		}
		s.reply(o.cl, o.frame, true)
	case opRateClose:
		o.cl.conn.Close(CloseRateLimit, rateCloseReason)
	case opRestart:
		for _, cl := range s.subs[o.topic] {
			cl.conn.Close(CloseTopicRestarted, "topic "+o.topic.name+" started afresh: reconnect with since")
		}
	case opDrained:
		// A copy: tell edits the runs.
		for _, r := range slices.Clone(s.lost[o.cl]) {
			if s.tell(o.cl, r.topic) != nil {
				o.cl.conn.NotifyDrain() // full again already
				break
			}
		}
	case opStop:
		return true
	}
	return false
}

// queue queues frame to cl and applies the slow-consumer policy.
func (s *shard) queue(cl *client, frame []byte) error {
	err := s.batch.Send(cl.conn, frame, 0)
	if err == wsconn.ErrQueueFull {
		s.slowConsumer(cl)
	}
	return err
}

// reply queues a reply or an error to cl, behind what is queued: a frame
// cl may keep (owned) is written with the pass's deliveries; one in
// scratch is written now, and copied only if it must wait. A skipped reply, unlike a skipped message, leaves no dropped
// notice to tell the client, so under Drop a reply goes out past the queue limit
// (see wsconn.Reply). Under Disconnect a full queue evicts cl, as for a
// message.
func (s *shard) reply(cl *client, frame []byte, owned bool) {
	var opts wsconn.SendOption
	if s.hub.cfg.SlowConsumer != Disconnect {
		opts |= wsconn.Reply
	}
	var err error
	if owned {
		// With the pass's deliveries, as many to a write as the pass
		// holds, or with the client's turn if one is gathering output.
		err = s.batch.Send(cl.conn, frame, opts)
	} else {
		err = cl.conn.Send(frame, opts|wsconn.Copy)
	}
	if err == wsconn.ErrQueueFull {
		s.slowConsumer(cl)
	}
}

// runOf returns the index of t's run in runs, or -1.
func runOf(runs []lostRange, t *Topic) int {
	return slices.IndexFunc(runs, func(r lostRange) bool { return r.topic == t })
}

// lose records that cl missed seq of t. A new run asks cl's connection to
// say when its queue empties, so that a lost last message is told too.
func (s *shard) lose(cl *client, t *Topic, seq uint64) {
	if s.loseRun(cl, t, seq, seq) {
		cl.conn.NotifyDrain()
	}
}

// loseRun records that cl lost the seqs from to to of t: a run it has not
// been told of yet continues to to, or a new run begins, and loseRun then
// reports true.
func (s *shard) loseRun(cl *client, t *Topic, from, to uint64) (started bool) {
	runs := s.lost[cl]
	if i := runOf(runs, t); i >= 0 {
		runs[i].to = to
		return false
	}
	s.lost[cl] = append(runs, lostRange{topic: t, from: from, to: to})
	s.lostIn[t]++
	return true
}

// forgetAll removes and returns all of cl's lost runs.
func (s *shard) forgetAll(cl *client) []lostRange {
	runs := s.lost[cl]
	for _, r := range runs {
		s.uncount(r.topic)
	}
	delete(s.lost, cl)
	return runs
}

// uncount removes a run of t from lostIn.
func (s *shard) uncount(t *Topic) {
	if s.lostIn[t]--; s.lostIn[t] == 0 {
		delete(s.lostIn, t)
	}
}

// forget removes and returns cl's lost run of t, if it has one.
func (s *shard) forget(cl *client, t *Topic) (lostRange, bool) {
	runs := s.lost[cl]
	i := runOf(runs, t)
	if i < 0 {
		return lostRange{}, false
	}
	r := runs[i]
	s.forgetAt(cl, runs, i)
	return r, true
}

// forgetAt removes runs[i], runs being cl's lost runs.
func (s *shard) forgetAt(cl *client, runs []lostRange, i int) {
	s.uncount(runs[i].topic)
	runs[i] = runs[len(runs)-1]
	runs = runs[:len(runs)-1]
	if len(runs) == 0 {
		delete(s.lost, cl)
	} else {
		s.lost[cl] = runs
	}
}

// tell queues to cl the notice of what it lost of t, if anything, and
// says whether cl may have t's next message: nil if there was nothing to
// tell or the notice is queued; the connection's error if it could not take
// it (wsconn.ErrQueueFull: no room, and the run stays, NotifyDrain
// pending).
func (s *shard) tell(cl *client, t *Topic) error {
	runs := s.lost[cl]
	i := runOf(runs, t)
	if i < 0 {
		return nil
	}
	// Built in scratch, and copied only if the socket does not take it at
	// once: a notice refused for want of room, again and again while a
	// flood lasts, costs no allocation.
	s.scratch = appendDropped(s.scratch[:0], runs[i])
	if err := cl.conn.Send(s.scratch, wsconn.Copy); err != nil {
		return err
	}
	s.forgetAt(cl, runs, i)
	return nil
}

func (s *shard) slowConsumer(cl *client) {
	if s.hub.cfg.SlowConsumer == Disconnect {
		// Evicted, the connection is closing: later frames get
		// ErrClosed, so it is counted once.
		s.slowDisconnects.Add(1)
		cl.conn.Evict(CloseSlowConsumer, "slow consumer")
	}
}

func (s *shard) remove(t *Topic, cl *client) {
	list := s.subs[t]
	for i, x := range list {
		if x == cl {
			last := len(list) - 1
			list[i] = list[last]
			list[last] = nil
			list = list[:last]
			break
		}
	}
	if len(list) == 0 {
		delete(s.subs, t)
		return
	}
	s.subs[t] = list
}
