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
// Its methods are called without any of the hub's locks held, except Watch,
// which is called with the topic's lock held (see Hub.watchLocked).
type Broker interface {
	// Publish stores data, a valid JSON value, as topic's next message and
	// returns its seq once it is stored. An error means the message may not
	// have been stored; ctx bounds the wait.
	Publish(ctx context.Context, topic string, data []byte) (uint64, error)
	// Watch returns topic's last stored message and starts calling deliver
	// with each message stored after it, in seq order, one at a time, on a
	// goroutine of the broker's, until the returned Watch is stopped.
	// deliver may block: the broker then holds the messages back.
	Watch(ctx context.Context, topic string, deliver func(BrokerMessage)) (Watch, BrokerMessage, error)
	// Connected reports whether the broker can store publishes now.
	Connected() bool
}

// Watch is a broker's delivery of one topic's messages to one node.
type Watch interface {
	// Stop ends the delivery; a call of deliver in progress may finish.
	Stop()
}

// BrokerMessage is one stored message of a topic. Seq 0 with an empty
// Epoch is the head of a topic that holds no message.
type BrokerMessage struct {
	Seq   uint64
	Epoch string // names the topic's history; a new one when it starts afresh
	Data  []byte // owned by the receiver
	Time  time.Time
}

// ErrUnavailable is returned by Publish and is the error code
// CodeUnavailable when the cluster's broker cannot store a message (NATS is
// unreachable); the message may be retried.
var ErrUnavailable = errors.New("broadcast: cluster unavailable")

// brokerTimeout bounds a publish or a watch's start through the broker.
const brokerTimeout = 10 * time.Second
