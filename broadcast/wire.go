package broadcast

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/gobwas/ws"

	"github.com/fanout/fanout/wsconn"
)

// Error codes of the error frames sent to clients (wire protocol v1).
const (
	CodeBadJSON              = "bad_json"               // the message is not a JSON object of the protocol
	CodeUnknownType          = "unknown_type"           // "type" is none of subscribe, unsubscribe, publish
	CodeInvalidTopic         = "invalid_topic"          // the topic name breaks the rules
	CodeTooManySubscriptions = "too_many_subscriptions" // the connection is at MaxSubscriptions
	CodeAlreadySubscribed    = "already_subscribed"     // subscribe to a topic already subscribed
	CodeNotSubscribed        = "not_subscribed"         // unsubscribe from a topic not subscribed
	CodeInvalidData          = "invalid_data"           // publish without valid JSON data
	CodeBinaryUnsupported    = "binary_unsupported"     // the protocol is text frames of JSON
	CodeUnavailable          = "unavailable"            // the server is shutting down
	CodeForbidden            = "forbidden"              // the token does not grant the topic
	CodeTokenExpired         = "token_expired"          // the token's exp has passed; reconnect with a new one
	CodeRateLimited          = "rate_limited"           // over the message rate; the message was not handled
	CodeTooLarge             = "too_large"              // publish data over the size limit
	CodeTooManyTopics        = "too_many_topics"        // the topic does not exist and the server holds its limit of topics
)

// CloseTokenExpired is the close code of a connection whose token's exp
// has passed: it must reconnect with a new token.
const CloseTokenExpired ws.StatusCode = 4001

// CloseRateLimit is the close code (policy violation) of a client that kept
// sending over the message rate after it was told.
const CloseRateLimit = ws.StatusPolicyViolation

// clientMessage is a message from a client (wire protocol v1).
type clientMessage struct {
	Type  string          `json:"type"`
	Topic string          `json:"topic"`
	Since *uint64         `json:"since"`
	Epoch string          `json:"epoch"`
	Data  json.RawMessage `json:"data"`
	ID    json.RawMessage `json:"id"`
}

// maxIDBytes bounds a client message's id, as it is sent back.
const maxIDBytes = 64

// request is what a reply or an error names of the client message it
// answers: its topic, and its id (raw JSON, a string or a number), if any.
type request struct {
	topic string
	id    json.RawMessage
	// opening: made by OnOpen (the URL's subscribes), whose answers go
	// out with the upgrade response (wsconn.Conn.SendOnOpen).
	opening bool
	// url: one of the URL's topics, whose recovery makes the rest wait
	// until its replay is written (see openQuery).
	url bool
}

// validID reports whether id, raw JSON, is a string or a number of at most
// maxIDBytes: a string's quotes do not count, its escapes do.
func validID(id json.RawMessage) bool {
	if len(id) == 0 {
		return false
	}
	switch c := id[0]; {
	case c == '"':
		return len(id) <= maxIDBytes+2
	case c == '-' || c >= '0' && c <= '9':
		return len(id) <= maxIDBytes
	}
	return false
}

// envelopeBytes is what a client message may hold beyond its data and topic:
// keys, type, since, epoch, id and some whitespace.
const envelopeBytes = 1 << 10

// quote quotes s, part of a client message, for an error message: at most
// MaxTopicBytes of it, so that an error never echoes much of its input.
func (h *Hub) quote(s string) string {
	if c := h.cut(s); len(c) < len(s) {
		return strconv.Quote(c) + "…"
	}
	return strconv.Quote(s)
}

// appendDropped appends the frame of a dropped notice for r to dst.
func appendDropped(dst []byte, r lostRange) []byte {
	var buf [256]byte
	p := append(buf[:0], `{"type":"dropped","topic":"`...)
	p = append(p, r.topic.name...)
	p = append(p, `","from":`...)
	p = strconv.AppendUint(p, r.from, 10)
	p = append(p, `,"to":`...)
	p = strconv.AppendUint(p, r.to, 10)
	p = append(p, '}')
	return wsconn.AppendFrame(dst, ws.OpText, p)
}

// appendSubscribed appends the frame of a subscribed reply to dst. It is
// built by appending, as it goes out on every connect: topic names and epochs
// need no JSON escaping.
func appendSubscribed(dst []byte, topic string, seq uint64, epoch string, recovered bool, id json.RawMessage) []byte {
	var buf [256 + maxIDBytes + 2]byte
	p := append(buf[:0], `{"type":"subscribed","topic":"`...)
	p = append(p, topic...)
	p = append(p, `","seq":`...)
	p = strconv.AppendUint(p, seq, 10)
	p = append(p, `,"epoch":"`...)
	p = append(p, epoch...)
	p = append(p, `","recovered":`...)
	p = strconv.AppendBool(p, recovered)
	if len(id) > 0 {
		p = append(p, `,"id":`...)
		p = append(p, id...)
	}
	p = append(p, '}')
	return wsconn.AppendFrame(dst, ws.OpText, p)
}

// appendReply appends the frame of a published (with seq) or unsubscribed
// reply to dst, built by appending as appendSubscribed is: a publish is
// acknowledged for every message a client publishes, and the topic, valid,
// needs no escaping.
func appendReply(dst []byte, typ, topic string, seq uint64, withSeq bool, id json.RawMessage) []byte {
	var buf [256 + maxIDBytes + 2]byte
	p := append(buf[:0], `{"type":"`...)
	p = append(p, typ...)
	p = append(p, `","topic":"`...)
	p = append(p, topic...)
	p = append(p, '"')
	if withSeq {
		p = append(p, `,"seq":`...)
		p = strconv.AppendUint(p, seq, 10)
	}
	if len(id) > 0 {
		p = append(p, `,"id":`...)
		p = append(p, id...)
	}
	p = append(p, '}')
	return wsconn.AppendFrame(dst, ws.OpText, p)
}

// publishError returns the error code and message that answer a publish
// to topic that Hub.Publish refused with err, for a WebSocket publish and
// an item of a batch alike.
func (h *Hub) publishError(err error, topic string) (code, message string) {
	switch err {
	case ErrInvalidTopic:
		return CodeInvalidTopic, "invalid topic name " + h.quote(topic)
	case ErrInvalidData:
		return CodeInvalidData, "publish needs data, a JSON value"
	case ErrTooManyTopics:
		return CodeTooManyTopics, "topic limit of " + strconv.Itoa(h.cfg.MaxTopics) + " reached; not published to " + h.quote(topic)
	case ErrTooLarge:
		return CodeTooLarge, "data is larger than " + strconv.Itoa(h.cfg.MaxDataBytes) + " bytes"
	}
	if errors.Is(err, ErrUnavailable) {
		return CodeUnavailable, unavailableMessage(err, h.quote(topic))
	}
	return CodeUnavailable, "server shutting down"
}

// unavailableMessage says why a publish to topic (quoted) that the
// cluster's broker did not acknowledge failed, and whether it may have been
// stored all the same.
func unavailableMessage(err error, topic string) string {
	if errors.Is(err, ErrNotStored) {
		return "cluster unavailable: not published to " + topic + "; try again"
	}
	return "cluster unavailable: the publish to " + topic + " was not acknowledged, but may have been stored; a retry may store it twice"
}

type errorReply struct {
	Type    string          `json:"type"`
	Code    string          `json:"code"`
	Topic   string          `json:"topic,omitempty"`
	Message string          `json:"message"`
	ID      json.RawMessage `json:"id,omitempty"`
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only the reply types above are marshalled
	}
	return b
}

func controlFrame(v any) []byte { return wsconn.NewFrame(ws.OpText, mustJSON(v)) }

// cut returns s cut to MaxTopicBytes: no valid topic is longer, and an
// answer need not echo more of an invalid one.
func (h *Hub) cut(s string) string {
	if len(s) > h.cfg.MaxTopicBytes {
		return s[:h.cfg.MaxTopicBytes]
	}
	return s
}
