package broadcast

import "sync"

// inbox is a shard's queue of ops: first in, first out, and put never
// blocks. Ops are put under a topic's lock (a publish's deliveries, a
// subscribe), which orders a topic's messages on every shard. A worker that
// blocked there on a full shard would hold up every publish to that topic,
// and through the hub's map lock every new topic, for as long as the shard
// takes. So an op that finds the inbox at its limit is taken all the same,
// and put returns a channel to wait on for room, once the caller holds no
// lock (see waitRoom). The inbox then holds at most its limit plus one op
// per poster (workers and HTTP handlers), and a busy shard still slows its
// posters down.
//
// put is safe for concurrent use; take is called by the shard alone.
type inbox struct {
	mu    sync.Mutex
	ops   []op
	spare []op // the slice take returned last, reused when the shard is done with it
	limit int
	room  chan struct{} // closed by take once the ops are taken; nil while no one waits
	wake  chan struct{} // capacity 1: the shard has ops to take, or shrink is set
	// puts counts the ops put since the last trim; shrink is set by a trim
	// that found none, for the next take that finds nothing queued.
	puts   int
	shrink bool
}

// inboxKeep is the capacity, in ops, of each of its two slices that an
// inbox keeps once it is quiet (about 11 KB each): a burst grows them past
// it for as long as it lasts, and trim gives the rest back.
const inboxKeep = 64

func newInbox(limit int) *inbox {
	return &inbox{limit: max(limit, 1), wake: make(chan struct{}, 1)}
}

// put appends o. It returns nil, or, when the inbox is at or past its
// limit, a channel that is closed when the shard takes what is queued: the
// caller must wait on it, with waitRoom, after releasing its locks.
func (b *inbox) put(o op) (room <-chan struct{}) {
	b.mu.Lock()
	b.ops = append(b.ops, o)
	b.puts++
	if len(b.ops) > b.limit {
		if b.room == nil {
			b.room = make(chan struct{})
		}
		room = b.room
	}
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return room
}

// take waits until ops are queued and returns all of them, in the order
// they were put. The slice is the shard's until the next take, which reuses
// it; take clears the ops handled in it, so that none keeps a frame alive,
// and does so before it waits: an idle shard holds no frame and no client.
func (b *inbox) take() []op {
	for {
		b.mu.Lock()
		clear(b.spare)
		b.spare = b.spare[:0]
		if len(b.ops) > 0 {
			ops := b.ops
			b.ops, b.spare = b.spare, ops
			b.shrink = false // put to since the trim: not quiet
			if b.room != nil {
				close(b.room)
				b.room = nil
			}
			b.mu.Unlock()
			return ops
		}
		if b.shrink {
			b.shrink = false
			if cap(b.ops) > inboxKeep {
				b.ops = nil
			}
			if cap(b.spare) > inboxKeep {
				b.spare = nil
			}
		}
		b.mu.Unlock()
		<-b.wake
	}
}

// trim is called now and then (by the hub's expiry, every few seconds):
// if nothing was put since the last trim, the next take that finds the
// inbox empty gives back what a burst grew past inboxKeep. Only a quiet
// inbox shrinks, so that one busy on and off does not allocate its slices
// anew each time it empties. trim is safe for concurrent use.
func (b *inbox) trim() {
	b.mu.Lock()
	shrink := b.puts == 0 && (cap(b.ops) > inboxKeep || cap(b.spare) > inboxKeep)
	b.puts = 0
	b.shrink = b.shrink || shrink
	b.mu.Unlock()
	if shrink {
		select {
		case b.wake <- struct{}{}:
		default:
		}
	}
}

// waitRoom waits on each channel that put returned; nil ones are skipped.
// The caller must hold no lock.
func waitRoom(rooms ...<-chan struct{}) {
	for _, r := range rooms {
		if r != nil {
			<-r
		}
	}
}
