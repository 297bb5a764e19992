package broadcast

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/ws"

	"github.com/fanout/fanout/auth"
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

// client is one subscriber connection: the wsconn.Handler of a /ws
// connection. Its methods run on the connection's worker, one at a time.
// It is kept to 64 bytes: there is one per connection.
type client struct {
	shard   *shard
	conn    *wsconn.Conn
	topics  []*Topic      // subscribed
	initial *string       // the URL's query, until OnOpen
	id      auth.Identity // zero without authentication
	tokens  float32       // rate bucket: messages the client may send now; negative: over
	filled  uint32        // rate bucket: Hub.started-relative ms of the last refill
}

func (cl *client) hub() *Hub { return cl.shard.hub }

// Upgrade accepts a WebSocket upgrade to the hub's endpoint (wire protocol
// v1): ?topics=a,b subscribes at connect, ?since=a:41,b:17 recovers what
// those topics published after the given seqs. With Config.Auth, the
// request's token is checked first (see Authenticate): 401 without a valid
// one, 403 for a topic it does not grant, and the connection is subscribed
// to its user's topic too. A bad query is rejected with 400, a
// shutting-down hub with 503.
func (h *Hub) Upgrade(r *wsconn.Request) (wsconn.Handler, error) {
	id, err := h.Authenticate(r)
	if err != nil {
		return nil, err
	}
	n := 0
	var forbidden string
	err = h.walkQuery(r.RawQuery, func(q querySub) {
		n++
		if h.cfg.Auth != nil && forbidden == "" && !id.CanSubscribe(q.topic) {
			forbidden = q.topic
		}
	})
	switch {
	case err != nil:
		return nil, wsconn.Reject(http.StatusBadRequest, err.Error())
	case forbidden != "":
		h.forbidden.Add(1)
		return nil, wsconn.Reject(http.StatusForbidden, "token does not grant topic "+strconv.Quote(forbidden))
	}
	h.gate.RLock()
	closed := h.closed
	h.gate.RUnlock()
	if closed {
		return nil, wsconn.Reject(http.StatusServiceUnavailable, "shutting down")
	}
	cl := &client{shard: h.nextShard(), id: id, tokens: float32(h.cfg.MessageBurst), filled: h.clock()}
	if n > 0 {
		// Only the query is kept, and parsed again in OnOpen: the
		// garbage of every handshake adds to the heap that thousands of
		// idle connections keep.
		q := r.RawQuery
		cl.initial = &q
	}
	return cl, nil
}

// Authenticate verifies the token of an upgrade request (Authorization:
// Bearer, or ?token=) and returns the identity it grants. Without Auth it
// returns the zero Identity and no error. A missing or invalid token gives
// an error for Config.Upgrade that rejects the upgrade with 401 and a
// WWW-Authenticate challenge (RFC 6750).
func (h *Hub) Authenticate(r *wsconn.Request) (auth.Identity, error) {
	if h.cfg.Auth == nil {
		return auth.Identity{}, nil
	}
	id, err := h.cfg.Auth.Verify(auth.Token(r.Authorization, r.RawQuery))
	if err == nil && !h.validTopic(id.UserTopic()) {
		err = errors.New("sub is too long for a user topic")
	}
	switch {
	case err == nil:
		return id, nil
	case errors.Is(err, auth.ErrNoToken):
		h.authFailures.Add(1)
		return id, wsconn.RejectHeader(http.StatusUnauthorized, "missing token", http.Header{"Www-Authenticate": {challengeMissing}})
	}
	h.authFailures.Add(1)
	return id, wsconn.RejectHeader(http.StatusUnauthorized, "invalid token: "+strings.TrimPrefix(err.Error(), "auth: "),
		http.Header{"Www-Authenticate": {challengeInvalid}})
}

// The WWW-Authenticate challenges of a 401 (RFC 6750).
const (
	challengeMissing = `Bearer realm="fanout"`
	challengeInvalid = `Bearer realm="fanout", error="invalid_token"`
)

// errTooManyTopics is walkQuery's error for a query that lists more topics
// than MaxSubscriptions.
var errTooManyTopics = errors.New("too many topics")

// querySub is a topic of a /ws query, with what since= says of it.
type querySub struct {
	topic    string
	since    uint64
	hasSince bool
	epoch    string // "" when since has no @EPOCH
}

// walkQuery checks the query of a /ws request and calls f for each topic in
// topics=, once, in order, with what since= says of it. It works in time
// linear in the query's length, and stops at the first error, or once the
// topics exceed MaxSubscriptions (errTooManyTopics).
func (h *Hub) walkQuery(raw string, f func(querySub)) error {
	var subs []querySub
	var index map[string]int // once there are too many topics to scan
	find := func(topic string) int {
		if index != nil {
			if i, ok := index[topic]; ok {
				return i
			}
			return -1
		}
		for i := range subs {
			if subs[i].topic == topic {
				return i
			}
		}
		return -1
	}
	var sinces []string
	for rest := raw; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		key, value, _ := strings.Cut(pair, "=")
		if key != "topics" && key != "since" {
			continue
		}
		if strings.ContainsAny(value, "%+") {
			v, err := url.QueryUnescape(value)
			if err != nil {
				return errors.New("malformed query")
			}
			value = v
		}
		if key == "since" {
			sinces = append(sinces, value) // after every topic is known
			continue
		}
		for rest, more := value, true; more; {
			var name string
			name, rest, more = strings.Cut(rest, ",")
			if !h.validTopic(name) {
				return errors.New("invalid topic name " + strconv.Quote(name))
			}
			if find(name) >= 0 {
				continue
			}
			if len(subs) == h.cfg.MaxSubscriptions {
				return errTooManyTopics
			}
			subs = append(subs, querySub{topic: name})
			if index == nil && len(subs) > 16 {
				index = make(map[string]int, len(subs))
				for i, s := range subs {
					index[s.topic] = i
				}
			} else if index != nil {
				index[name] = len(subs) - 1
			}
		}
	}
	// since: every item is topic:seq or topic:seq@EPOCH, with a topic that
	// topics lists; the first item for a topic counts.
	for _, list := range sinces {
		for rest := list; rest != ""; {
			var item string
			item, rest, _ = strings.Cut(rest, ",")
			topic, seq, epoch, err := parseSince(item)
			if err != nil {
				return err
			}
			i := find(topic)
			if i < 0 {
				return errors.New("since names a topic that topics does not list")
			}
			if !subs[i].hasSince {
				subs[i].since, subs[i].hasSince, subs[i].epoch = seq, true, epoch
			}
		}
	}
	for _, s := range subs {
		f(s)
	}
	return nil
}

// parseSince splits a since item topic:seq or topic:seq@EPOCH. Topic names
// may hold ':' and '@', so the item splits at its last ':', and the seq ends
// at the '@' after it.
func parseSince(item string) (topic string, seq uint64, epoch string, err error) {
	i := strings.LastIndexByte(item, ':')
	if i < 0 {
		return "", 0, "", errors.New("since must be topic:seq or topic:seq@epoch")
	}
	n, epoch, hasEpoch := strings.Cut(item[i+1:], "@")
	seq, err = strconv.ParseUint(n, 10, 64)
	if err != nil || hasEpoch && !validEpoch(epoch) {
		return "", 0, "", errors.New("since must be topic:seq or topic:seq@epoch")
	}
	return item[:i], seq, epoch, nil
}

// validEpoch reports whether s can be an epoch: 1 to 16 of 0-9 a-z.
func validEpoch(s string) bool {
	if len(s) == 0 || len(s) > 16 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}

// OnOpen subscribes the topics of the URL.
func (cl *client) OnOpen(c *wsconn.Conn) {
	cl.conn = c
	cl.hub().clients.Add(1)
	if cl.initial != nil {
		_ = cl.hub().walkQuery(*cl.initial, func(q querySub) {
			var since *uint64
			if q.hasSince {
				since = &q.since
			}
			cl.subscribe(request{topic: q.topic}, since, q.epoch)
		})
		cl.initial = nil
	}
	if !cl.id.IsZero() {
		// Every connection of a user hears the user's own topic.
		if own := cl.id.UserTopic(); cl.subscribed(own) < 0 {
			cl.subscribe(request{topic: own}, nil, "")
		}
	}
}

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
}

// validID reports whether id, raw JSON, is a string or a number of at most
// maxIDBytes.
func validID(id json.RawMessage) bool {
	if len(id) == 0 || len(id) > maxIDBytes {
		return false
	}
	c := id[0]
	return c == '"' || c == '-' || c >= '0' && c <= '9'
}

// OnMessage handles subscribe, unsubscribe and publish. A bad message gets
// an error frame; the connection stays open.
func (cl *client) OnMessage(c *wsconn.Conn, op ws.OpCode, payload []byte) {
	cl.hub().clientMsgs.Add(1)
	if !cl.allow(len(payload)) {
		return
	}
	if op != ws.OpText {
		cl.sendError(request{}, CodeBinaryUnsupported, "messages are JSON text frames")
		return
	}
	var m clientMessage
	if err := json.Unmarshal(payload, &m); err != nil {
		cl.sendError(request{}, CodeBadJSON, "message is not a JSON object: "+err.Error())
		return
	}
	if string(m.ID) == "null" {
		m.ID = nil
	}
	req := request{topic: m.Topic, id: m.ID}
	if m.ID != nil && !validID(m.ID) {
		req.id = nil
		cl.sendError(req, CodeBadJSON, "id must be a string or a number of at most "+strconv.Itoa(maxIDBytes)+" bytes")
		return
	}
	switch m.Type {
	case "subscribe":
		cl.subscribe(req, m.Since, m.Epoch)
	case "unsubscribe":
		cl.unsubscribe(req)
	case "publish":
		cl.publish(req, m.Data)
	default:
		cl.sendError(req, CodeUnknownType, "unknown message type "+cl.hub().quote(m.Type))
	}
}

// Expired closes a connection whose token has expired (wsconn.Expirer):
// the token's grants end at its exp, subscriptions included.
func (cl *client) Expired(_ *wsconn.Conn, now time.Time) (ws.StatusCode, string, bool) {
	if cl.hub().cfg.Auth == nil || !cl.id.Expired(now) {
		return 0, "", false
	}
	cl.hub().expiryCloses.Add(1)
	return CloseTokenExpired, "token expired", true
}

// OnDrain asks the shard to tell the client what it lost while its queue
// was full (see shard.lost).
func (cl *client) OnDrain(*wsconn.Conn) {
	h := cl.hub()
	if h.enter() {
		room := cl.shard.post(op{kind: opDrained, cl: cl})
		h.exit()
		waitRoom(room)
	}
}

// OnClose drops the connection's subscriptions.
func (cl *client) OnClose(*wsconn.Conn) {
	h := cl.hub()
	h.clients.Add(-1)
	if len(cl.topics) == 0 {
		return
	}
	for _, t := range cl.topics {
		t.leave(cl.shard)
	}
	h.subscriptions.Add(-int64(len(cl.topics)))
	if h.enter() {
		room := cl.shard.post(op{kind: opLeave, cl: cl, topics: cl.topics})
		h.exit()
		waitRoom(room)
	}
	cl.topics = nil
}

func (cl *client) subscribed(name string) int {
	for i, t := range cl.topics {
		if t.name == name {
			return i
		}
	}
	return -1
}

// subscribe subscribes to name. With since (and epoch, if the client knows
// it, the topic's), the reply says recovered:true with seq = since, and the
// messages after since that history holds follow it. The reply, the replay
// and the live messages reach the client in that order, with no gap and no
// duplicate, because the seq snapshot and the op to the shard are taken
// under the topic's lock, which publishes also take. Otherwise the reply
// says recovered:false with the topic's latest seq, and nothing is replayed.
func (cl *client) subscribe(req request, since *uint64, epoch string) {
	h := cl.hub()
	name := req.topic
	switch {
	case !h.validTopic(name):
		cl.sendError(req, CodeInvalidTopic, "invalid topic name "+h.quote(name))
		return
	case !cl.may(req, auth.Identity.CanSubscribe):
		return
	case cl.subscribed(name) >= 0:
		cl.sendError(req, CodeAlreadySubscribed, "already subscribed to "+strconv.Quote(name))
		return
	case len(cl.topics) >= h.cfg.MaxSubscriptions:
		cl.sendError(req, CodeTooManySubscriptions, "subscription limit of "+strconv.Itoa(h.cfg.MaxSubscriptions)+" reached; not subscribed to "+strconv.Quote(name))
		return
	}
	if !h.enter() {
		cl.sendError(req, CodeUnavailable, "server shutting down")
		return
	}
	// A recovery may replay: the connection handles no more messages
	// until the shard has queued what it replays, so that a client cannot
	// pile up replays faster than they drain (see wsconn.Conn.Hold). Held
	// before the topic's lock, which is never held while taking a
	// connection's.
	held := since != nil
	if held {
		cl.conn.Hold()
	}
	t, err := h.lockTopic(name)
	if err != nil {
		if held {
			_ = cl.conn.SendReplay(nil) // releases the hold
		}
		h.exit()
		cl.sendError(req, CodeTooManyTopics, "topic limit of "+strconv.Itoa(h.cfg.MaxTopics)+" reached; not subscribed to "+h.quote(name))
		return
	}
	// The reply's seq is the one after which messages follow: since, if
	// what came after it is replayed; otherwise the topic's latest.
	seq := t.seq
	var replay [][]byte
	recovered := false
	if since != nil && (epoch == "" || epoch == t.epoch) {
		// Another epoch's seqs name other messages: nothing is trusted.
		if replay, recovered = t.history.since(*since, t.seq); recovered {
			seq = *since
		}
	}
	t.join(cl.shard)
	room := cl.shard.post(op{kind: opSubscribe, topic: t, cl: cl, replay: replay, held: held, seq: seq, recovered: recovered, id: req.id})
	t.mu.Unlock()
	h.exit()
	cl.topics = append(cl.topics, t)
	h.subscriptions.Add(1)
	waitRoom(room)
}

func (cl *client) unsubscribe(req request) {
	name := req.topic
	i := cl.subscribed(name)
	if i < 0 {
		cl.sendError(req, CodeNotSubscribed, "not subscribed to "+cl.hub().quote(name))
		return
	}
	h := cl.hub()
	t := cl.topics[i]
	cl.topics = append(cl.topics[:i], cl.topics[i+1:]...)
	t.leave(cl.shard)
	h.subscriptions.Add(-1)
	if !h.enter() {
		return
	}
	// Through the shard, so that the reply follows every message queued
	// before the unsubscribe.
	reply := controlFrame(controlReply{Type: "unsubscribed", Topic: name, ID: req.id})
	room := cl.shard.post(op{kind: opUnsubscribe, topic: t, cl: cl, frame: reply})
	h.exit()
	waitRoom(room)
}

func (cl *client) publish(req request, data json.RawMessage) {
	h := cl.hub()
	name := req.topic
	if h.cfg.Auth == nil && h.cfg.PublishKey != "" && !h.cfg.AnonymousPublish {
		// A publish key guards publishing; a WebSocket without a token
		// cannot present it.
		h.forbidden.Add(1)
		cl.sendError(req, CodeForbidden, "publishing needs the publish key: use POST /publish")
		return
	}
	if h.validTopic(name) && !cl.may(req, auth.Identity.CanPublish) {
		return
	}
	seq, err := cl.hub().Publish(name, data)
	switch err {
	case nil:
		cl.send(controlFrame(controlReply{Type: "published", Topic: name, Seq: &seq, ID: req.id}))
	case ErrInvalidTopic:
		cl.sendError(req, CodeInvalidTopic, "invalid topic name "+h.quote(name))
	case ErrInvalidData:
		cl.sendError(req, CodeInvalidData, "publish needs data, a JSON value")
	case ErrTooManyTopics:
		cl.sendError(req, CodeTooManyTopics, "topic limit of "+strconv.Itoa(h.cfg.MaxTopics)+" reached; not published to "+h.quote(name))
	case ErrTooLarge:
		cl.sendError(req, CodeTooLarge, "data is larger than "+strconv.Itoa(cl.hub().cfg.MaxDataBytes)+" bytes")
	default:
		cl.sendError(req, CodeUnavailable, "server shutting down")
	}
}

// may reports whether the client's token grants it topic by the check
// can; if not, it sends the error frame that says why. Without
// authentication everything is granted.
func (cl *client) may(req request, can func(auth.Identity, string) bool) bool {
	h := cl.hub()
	switch {
	case h.cfg.Auth == nil:
		return true
	case cl.id.Expired(time.Now()):
		cl.sendError(req, CodeTokenExpired, "token expired; reconnect with a new token")
	case !can(cl.id, req.topic):
		h.forbidden.Add(1)
		cl.sendError(req, CodeForbidden, "token does not grant topic "+strconv.Quote(req.topic))
	default:
		return true
	}
	return false
}

// MaxMessageBytes is the largest message the protocol can accept
// (wsconn.MessageLimiter): a publish of MaxDataBytes, with room for the rest
// of the message. A longer one is refused (1009) as it arrives, never
// buffered or decoded.
func (cl *client) MaxMessageBytes() int64 {
	cfg := &cl.hub().cfg
	return int64(cfg.MaxDataBytes) + int64(cfg.MaxTopicBytes) + envelopeBytes
}

// envelopeBytes is what a client message may hold beyond its data and topic:
// keys, type, since, epoch, id and some whitespace.
const envelopeBytes = 1 << 10

// quote quotes s, part of a client message, for an error message: at most
// MaxTopicBytes of it, so that an error never echoes much of its input.
func (h *Hub) quote(s string) string {
	if len(s) > h.cfg.MaxTopicBytes {
		return strconv.Quote(s[:h.cfg.MaxTopicBytes]) + "…"
	}
	return strconv.Quote(s)
}

// allow takes a message from the client's rate bucket. Over the rate, the
// message is refused with an error frame and the bucket goes into debt;
// a client whose debt reaches a whole burst is closed with 1008, since it
// kept sending after it was told.
func (cl *client) allow(size int) bool {
	h := cl.hub()
	rate := h.cfg.MessageRate
	if rate <= 0 {
		return true
	}
	now := h.clock()
	burst := float32(h.cfg.MessageBurst)
	if cl.tokens <= -burst {
		return false // closing already
	}
	cl.tokens = min(burst, cl.tokens+float32(float64(now-cl.filled)*rate/1000))
	cl.filled = now
	cost := float32(1)
	if h.cfg.ByteRate > 0 {
		// Bytes count in the same bucket: a message costs the share of
		// a second its bytes take at ByteRate, in messages at MessageRate.
		cost = max(1, float32(float64(size)*rate/h.cfg.ByteRate))
	}
	if cl.tokens >= cost {
		cl.tokens -= cost
		return true
	}
	cl.tokens -= cost
	if cl.tokens <= -burst {
		h.rateCloses.Add(1)
		cl.conn.Close(CloseRateLimit, "message rate exceeded")
		return false
	}
	h.rateLimited.Add(1)
	limit := strconv.FormatFloat(rate, 'g', -1, 64) + " messages"
	if h.cfg.ByteRate > 0 {
		limit += " or " + strconv.FormatFloat(h.cfg.ByteRate, 'g', -1, 64) + " bytes"
	}
	cl.sendError(request{}, CodeRateLimited, "over "+limit+" per second; message dropped")
	return false
}

// sendError sends an error frame that answers req.
func (cl *client) sendError(req request, code, message string) {
	topic := req.topic
	if n := cl.hub().cfg.MaxTopicBytes; len(topic) > n {
		topic = topic[:n] // no valid topic is longer: no use echoing more
	}
	cl.send(controlFrame(errorReply{Type: "error", Code: code, Topic: topic, Message: message, ID: req.id}))
}

// send queues frame, a reply or an error, through the client's shard: behind
// every reply and message the shard has queued to it so far, so that the
// client gets the answers to its messages in the order it sent them.
func (cl *client) send(frame []byte) {
	h := cl.hub()
	if !h.enter() {
		// Shutting down: no shard queues anything more.
		_ = cl.conn.SendOverLimit(frame)
		return
	}
	room := cl.shard.post(op{kind: opReply, cl: cl, frame: frame})
	h.exit()
	waitRoom(room)
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
	var buf [256 + maxIDBytes]byte
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

type controlReply struct {
	Type  string          `json:"type"`
	Topic string          `json:"topic"`
	Seq   *uint64         `json:"seq,omitempty"`
	ID    json.RawMessage `json:"id,omitempty"`
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
