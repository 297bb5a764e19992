package broadcast

import (
	"bytes"
	"encoding/json"
	"strconv"
	"time"

	"github.com/gobwas/ws"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/wsconn"
)

// client is one subscriber connection: the wsconn.Handler of a /ws
// connection. Its methods run on the connection's worker, one at a time.
// It is kept to 48 bytes, a size class: there is one per connection.
type client struct {
	shard  *shard
	conn   *wsconn.Conn
	topics topicSet      // subscribed
	id     auth.Identity // zero without authentication
	tokens float32       // rate bucket: messages the client may send now; negative: over
	filled uint32        // rate bucket: Hub.started-relative ms of the last refill
}

func (cl *client) hub() *Hub { return cl.shard.hub }

// OnOpen subscribes the topics of the URL.
func (cl *client) OnOpen(c *wsconn.Conn) {
	cl.conn = c
	cl.hub().clients.Add(1)
	if c.Compressed() {
		cl.hub().deflateClients.Add(1)
	}
	if r := c.UpgradeRequest(); r != nil && r.RawQuery != "" {
		// Upgrade checked the query; nothing of it is kept on the
		// client, unless a replay makes the rest wait (see openQuery).
		cl.openQuery(r.RawQuery, 0, false)
		return
	}
	cl.subscribeOwn(true)
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
		// Refused unread, as any bad_json: no id, no topic.
		cl.sendError(request{}, CodeBadJSON, "id must be a string or a number of at most "+strconv.Itoa(maxIDBytes)+" bytes")
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
	if cl.hub().cfg.Auth == nil {
		return 0, "", false
	}
	return cl.hub().tokenExpired(cl.id, now)
}

// OnDrain goes on with the URL's topics if they wait for a replay to be
// written (see openQuery), and asks the shard to tell the client what it
// lost while its queue was full (see shard.lost).
func (cl *client) OnDrain(*wsconn.Conn) {
	cl.continueOpening()
	h := cl.hub()
	if h.enter() {
		room := cl.shard.post(op{kind: opDrained, cl: cl})
		h.exit()
		waitRoom(room)
	}
}

// OnClose drops the connection's subscriptions.
func (cl *client) OnClose(c *wsconn.Conn) {
	h := cl.hub()
	h.clients.Add(-1)
	h.openings.take(cl) // the rest of its URL, if it waited for a replay
	if c.Compressed() {
		h.deflateClients.Add(-1)
	}
	if cl.topics.len() == 0 {
		return
	}
	for t := range cl.topics.all() {
		if h.cfg.Broker != nil {
			// Before the opLeave below: a watch that starts later
			// must not subscribe cl after it.
			t.dropWaiter(cl)
		}
		t.leave(cl.shard)
	}
	h.subscriptions.Add(-int64(cl.topics.len()))
	if h.enter() {
		room := cl.shard.post(op{kind: opLeave, cl: cl, topics: cl.topics})
		h.exit()
		waitRoom(room)
	}
	cl.topics = topicSet{}
}

// subscriptions returns how many topics the client is subscribed to, not
// counting its user's own: every authenticated connection has that one
// besides the --max-subscriptions of its choice.
func (cl *client) subscriptions() int {
	n := cl.topics.len()
	for i := range n {
		if cl.id.IsUserTopic(cl.topics.at(i).name) {
			return n - 1
		}
	}
	return n
}

func (cl *client) subscribed(name string) int {
	for i := range cl.topics.len() {
		if cl.topics.at(i).name == name {
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
//
// From OnOpen (req.opening), the reply, or the error, goes out with the
// upgrade response (see wsconn.Conn.SendOnOpen), in the same write, and so
// ahead of the replay and of every message the shard queues; in a cluster
// it comes once the topic's watch has started, as any subscribe's does.
//
// For one of the URL's topics (req.url), it reports whether the URL's next
// topics wait for this one's replay to be written (see openQuery).
func (cl *client) subscribe(req request, since *uint64, epoch string) (waits bool) {
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
	case !cl.id.IsUserTopic(name) && cl.subscriptions() >= h.cfg.MaxSubscriptions:
		cl.sendError(req, CodeTooManySubscriptions, "subscription limit of "+strconv.Itoa(h.cfg.MaxSubscriptions)+" reached; not subscribed to "+strconv.Quote(name))
		return
	}
	if !h.enter() {
		cl.sendError(req, CodeUnavailable, "server shutting down")
		return
	}
	// A recovery may replay: the connection handles no more messages
	// until the shard has queued what it replays, so that a client cannot
	// pile up replays faster than they drain (see wsconn.Conn.Hold). In a
	// cluster, the subscribe may wait for its topic's watch to start, and
	// the connection handles no more messages until it is answered. Held
	// before the topic's lock, which is never held while taking a
	// connection's.
	cluster := h.cfg.Broker != nil
	held := since != nil || cluster
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
	var room <-chan struct{}
	var reply []byte
	switch {
	case cluster && t.watch == nil && !h.cfg.Broker.Connected():
		t.mu.Unlock()
		_ = cl.conn.SendReplay(nil)
		h.exit()
		cl.sendError(req, CodeUnavailable, "cluster unavailable; not subscribed to "+h.quote(name)+": try again")
		return
	case cluster && (t.watch == nil || t.watch.starting()):
		// Answered once the watch has started, by startWatch, which
		// runs on a goroutine of its own: NATS's round trips hold no
		// worker, no lock and not the hub's gate.
		if t.watch == nil {
			t.watch = &topicWatch{ready: make(chan struct{})}
			go h.startWatch(t, t.watch)
		}
		// A URL's recovery cannot know yet whether it replays: the
		// rest of the URL waits for it as if it did.
		waits = req.url && since != nil
		wait := noWait
		if waits {
			wait = waitAlways
		}
		t.watch.waiters = append(t.watch.waiters, waiter{cl: cl, id: bytes.Clone(req.id), since: since, epoch: epoch, wait: wait})
		t.join(cl.shard)
	default:
		t.join(cl.shard)
		var answer []byte
		if req.opening {
			var buf [512]byte
			answer = buf[:0]
		}
		wait := noWait
		if req.url {
			wait = waitIfReplay
		}
		room, reply, waits = cl.joinLocked(t, req.id, since, epoch, held, wait, answer)
	}
	t.mu.Unlock()
	h.exit()
	if reply != nil {
		// Ahead of what the shard queues; dropped if OnOpen closed it.
		_ = cl.conn.SendOnOpen(reply)
	}
	cl.topics.add(t)
	h.subscriptions.Add(1)
	h.budget.trim() // past MaxHistoryBytes after a cluster watch took in history
	waitRoom(room)
	return waits
}

// joinLocked posts to cl's shard the op that answers cl's subscribe to t,
// replays what it missed and puts it on t's list there; t.mu is held and
// cl counted in t (Topic.join). The reply's seq is the one after which
// messages follow: since, if what came after it is replayed; otherwise the
// topic's latest. It returns the shard's room to wait for (see post).
//
// With answer not nil, the caller sends the reply, which joinLocked appends
// to answer and returns, and the shard does not; it must reach cl ahead of
// anything the shard queues to it (see wsconn.Conn.SendOnOpen).
//
// wait says whether the URL's next topics wait for this recovery's replay
// to be written (see openQuery); notify, whether they do: the shard then
// asks for OnDrain once the replay is in the queue.
func (cl *client) joinLocked(t *Topic, id []byte, since *uint64, epoch string, held bool, wait recoveryWait, answer []byte) (room <-chan struct{}, reply []byte, notify bool) {
	seq := t.seq
	var replay [][]byte
	recovered := false
	if since != nil && (epoch == "" || epoch == t.epoch) {
		// Another epoch's seqs name other messages: nothing is trusted.
		if replay, recovered = t.history.since(*since, t.seq); recovered {
			seq = *since
		}
	}
	if answer != nil {
		reply = appendSubscribed(answer, t.name, seq, t.epoch, recovered, id)
		id = nil
	}
	notify = held && (wait == waitAlways || wait == waitIfReplay && len(replay) > 0)
	room = cl.shard.post(op{kind: opSubscribe, topic: t, cl: cl, replay: replay, held: held, notify: notify, answered: reply != nil, seq: seq, recovered: recovered, id: id})
	return room, reply, notify
}

func (cl *client) unsubscribe(req request) {
	name := req.topic
	i := cl.subscribed(name)
	if i < 0 {
		cl.sendError(req, CodeNotSubscribed, "not subscribed to "+cl.hub().quote(name))
		return
	}
	h := cl.hub()
	t := cl.topics.removeAt(i)
	t.leave(cl.shard)
	h.subscriptions.Add(-1)
	if !h.enter() {
		return
	}
	// Through the shard, so that the reply follows every message queued
	// before the unsubscribe.
	reply := appendReply(nil, "unsubscribed", name, 0, false, req.id)
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
	if h.cfg.Broker != nil {
		// In a cluster the publish waits for NATS (up to brokerTimeout):
		// on a goroutine of its own, not on the worker that serves this
		// turn and others. The connection handles no more messages until
		// the publish is answered, so its replies keep their order.
		// data and id are in the read buffer, which the next read reuses.
		cl.conn.Hold()
		req.id = bytes.Clone(req.id)
		data = bytes.Clone(data)
		// Known here, in the turn: the goroutine may not read topics.
		own := cl.subscribed(name) >= 0
		go func() {
			cl.publishNow(req, data, own)
			_ = cl.conn.SendReplay(nil) // releases the hold
		}()
		return
	}
	cl.publishNow(req, data, false)
}

// publishNow is publish once the checks have passed. own: in a cluster, the
// client is subscribed to the topic, and the reply waits for the message to
// come back through the node's watch and go out before it, as on one node.
func (cl *client) publishNow(req request, data json.RawMessage, own bool) {
	h := cl.hub()
	name := req.topic
	seq, err := h.Publish(name, data)
	if err != nil {
		code, message := h.publishError(err, name)
		cl.sendError(req, code, message)
		return
	}
	if own {
		h.awaitDelivery(name, seq)
	}
	cl.send(appendReply(nil, "published", name, seq, true, req.id))
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

// sendError sends an error frame that answers req.
func (cl *client) sendError(req request, code, message string) {
	frame := controlFrame(errorReply{Type: "error", Code: code, Topic: cl.hub().cut(req.topic), Message: message, ID: req.id})
	if req.opening {
		// With the replies to the URL's other subscribes, in its order;
		// dropped if OnOpen closed the connection.
		_ = cl.conn.SendOnOpen(frame)
		return
	}
	cl.send(frame)
}

// send queues frame, a reply or an error, through the client's shard: behind
// every reply and message the shard has queued to it so far, so that the
// client gets the answers to its messages in the order it sent them.
func (cl *client) send(frame []byte) {
	h := cl.hub()
	if !h.enter() {
		// Shutting down: no shard queues anything more.
		_ = cl.conn.Send(frame, wsconn.Reply)
		return
	}
	room := cl.shard.post(op{kind: opReply, cl: cl, frame: frame})
	h.exit()
	waitRoom(room)
}
