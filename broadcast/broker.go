package broadcast

import (
	"context"
	"errors"
	"time"
)

// Broker joins hubs on several nodes into one cluster (Config.Broker): it
// stores every publish, gives it the topic's next seq whichever node it came
// through, and hands each node the messages of the topics it watches, that
// is, those with subscribers there. Package cluster implements it on NATS
// JetStream; a hub without one is a single node and never leaves the
// process.
//
// Publish and Watch are called without any of the hub's locks held, Watch
// on a goroutine of its own (see Hub.startWatch); Connected with a topic's
// lock held, and it must not wait.
type Broker interface {
	// Publish stores data, a valid JSON value, as topic's next message and
	// returns its seq once it is stored; ctx bounds the wait. An error
	// wraps ErrNotStored if the message surely was not stored; otherwise
	// it may have been, unacknowledged.
	Publish(ctx context.Context, topic string, data []byte) (uint64, error)
	// Watch starts calling deliver with each message of topic stored from
	// now on, in seq order, one at a time, on a goroutine of the broker's,
	// until the returned Watch is stopped; deliver may block, and the
	// broker then holds the messages back. It returns the messages the
	// broker holds already, oldest first, in one epoch and with gapless
	// seqs: the topic's history, whose last is the topic's latest. A topic
	// that holds none is given an epoch by a marker of seq 0: the same
	// epoch on every node.
	Watch(ctx context.Context, topic string, deliver func(BrokerMessage)) (Watch, []BrokerMessage, error)
	// Connected reports whether the broker can store publishes now. It
	// is a hint, and must answer at once: a subscribe asks it with the
	// topic's lock held, to refuse at once rather than wait for a watch
	// that cannot start.
	Connected() bool
}

// Watch is a broker's delivery of one topic's messages to one node.
type Watch interface {
	// Stop ends the delivery; a call of deliver in progress may finish.
	Stop()
}

// BrokerMessage is one stored message of a topic. One without data is a
// marker, which the hub fans out to no one: seq 0 starts an epoch, and
// another repeats the seq of the message before it, so that a quiet topic
// keeps its seq and epoch while history ages out.
type BrokerMessage struct {
	Seq   uint64
	Epoch string // names the topic's history; a new one when it starts afresh
	Data  []byte // owned by the receiver
	Time  time.Time
	// Restart, with nothing else, says that the broker lost the topic's
	// history (NATS lost its store): the hub forgets the topic and closes
	// its subscribers, and the next subscribe starts a new watch.
	Restart bool
}

// ErrUnavailable is returned by Publish and is the error code
// CodeUnavailable when the cluster's broker cannot store a message (NATS is
// unreachable); the message may be retried.
var ErrUnavailable = errors.New("broadcast: cluster unavailable")

// ErrNotStored is wrapped by a Broker's Publish error when the message
// surely was not stored (see Broker.Publish).
var ErrNotStored = errors.New("not stored")

// brokerTimeout bounds a publish or a watch's start through the broker.
const brokerTimeout = 10 * time.Second
