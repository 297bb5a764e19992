package client

import (
	"encoding/json"
	"fmt"
)

// Message is one message of a topic, delivered to its Handler once and in
// seq order.
type Message struct {
	Topic string
	Seq   uint64
	// Data is the message's JSON data. It is the handler's: the client
	// keeps no reference to it.
	Data json.RawMessage
}

// Handler receives the messages of a subscription. Handlers run one at a
// time on the client's read loop, so a slow handler backs the socket up
// (and the server, under its slow-consumer policy, may drop or disconnect)
// instead of growing a buffer. A handler may call Subscribe, Unsubscribe
// and Publish; it must not call Close.
type Handler func(Message)

// EventKind says what an Event reports.
type EventKind uint8

const (
	// Connected: a connection is up. Attempt counts the tries it took.
	Connected EventKind = iota + 1
	// Disconnected: the connection ended, with Err and, if the server sent
	// one, its close Code. The client reconnects unless Err is final (see
	// Client.Err).
	Disconnected
	// Subscribed: the server confirmed a subscription to Topic, at Seq in
	// Epoch: the messages that follow begin after Seq. Recovered says
	// whether the messages missed since the last connection follow; when
	// it is false and messages were missed, a Lost event says so first.
	// Seq is the reply's, or the last seq delivered when the reply's is
	// below it in the same epoch (a cluster node that is behind).
	Subscribed
	// Lost: messages of Topic will never be delivered. Reason says which:
	//
	//   - "dropped": the server skipped From to To, for the handler was
	//     too slow for its queue (--slow-consumer=drop), or, in a cluster,
	//     its node missed them and JetStream no longer held them.
	//   - "not_recovered": a reconnect could not recover From to To: the
	//     server's history no longer holds them.
	//   - "new_epoch": the topic's history started afresh (the server
	//     restarted, or forgot the topic): whatever followed PrevSeq in
	//     PrevEpoch cannot be known, and messages From (1) to To of the new
	//     Epoch were missed (none when To is 0).
	Lost
	// Refused: the server refused a subscribe to Topic (ErrorCode is the
	// protocol's error code, such as "forbidden"), and the subscription is
	// removed; or it is shutting down ("unavailable"), and the next
	// connection subscribes it again. A request refused for the client's
	// message rate is sent again after 1 s, then 2, 4, ... up to 30 s, with
	// no event.
	Refused
)

func (k EventKind) String() string {
	switch k {
	case Connected:
		return "connected"
	case Disconnected:
		return "disconnected"
	case Subscribed:
		return "subscribed"
	case Lost:
		return "lost"
	case Refused:
		return "refused"
	}
	return fmt.Sprintf("EventKind(%d)", k)
}

// Event is something the application should know: the connection's ups
// and downs, and every message that will not be delivered. Events are
// passed to Options.OnEvent on the client's read loop, in order with the
// messages.
type Event struct {
	Kind      EventKind
	Topic     string
	Seq       uint64 // Subscribed
	Epoch     string // Subscribed, Lost
	Recovered bool   // Subscribed
	From, To  uint64 // Lost
	Reason    string // Lost: "dropped", "not_recovered" or "new_epoch"
	PrevEpoch string // Lost, new_epoch: the epoch of PrevSeq
	PrevSeq   uint64 // Lost, new_epoch: the last seq delivered in PrevEpoch
	ErrorCode string // Refused
	Code      int    // Disconnected: the close code, 0 if none
	Attempt   int    // Connected
	Err       error  // Disconnected, Refused
}

func (e Event) String() string {
	switch e.Kind {
	case Connected:
		return fmt.Sprintf("connected (attempt %d)", e.Attempt)
	case Disconnected:
		return fmt.Sprintf("disconnected (code %d): %v", e.Code, e.Err)
	case Subscribed:
		return fmt.Sprintf("subscribed %s at %d@%s recovered=%t", e.Topic, e.Seq, e.Epoch, e.Recovered)
	case Lost:
		if e.Reason == "new_epoch" {
			return fmt.Sprintf("lost %s after %d@%s, and %d..%d@%s (new_epoch)", e.Topic, e.PrevSeq, e.PrevEpoch, e.From, e.To, e.Epoch)
		}
		return fmt.Sprintf("lost %s %d..%d (%s)", e.Topic, e.From, e.To, e.Reason)
	case Refused:
		return fmt.Sprintf("refused %s: %s: %v", e.Topic, e.ErrorCode, e.Err)
	}
	return e.Kind.String()
}
