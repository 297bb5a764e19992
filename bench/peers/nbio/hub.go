package main

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout/fanout/bench/peers/internal/contract"
	"github.com/lesismal/nbio/nbhttp/websocket"
)

// subscriber is the session of a /ws connection. Its fields are guarded by
// hub.mu.
type subscriber struct {
	conn   *websocket.Conn
	topics []string
	closed bool // OnClose has run; it must not be subscribed any more
}

// topic is a topic's subscribers and sequence, guarded by its mu: writes to
// nbio connections do not block (nbio keeps what the socket does not take),
// so a publish holds mu throughout and delivers in seq order.
type topic struct {
	mu   sync.Mutex
	seq  uint64
	subs map[*websocket.Conn]struct{}
}

// hub is the set of subscribers and topics.
type hub struct {
	mu     sync.Mutex
	topics map[string]*topic
	subs   map[*subscriber]struct{}

	connections atomic.Int64 // subscribed connections, for /stats
	stop        chan struct{}
}

func newHub() *hub {
	return &hub{
		topics: make(map[string]*topic),
		subs:   make(map[*subscriber]struct{}),
		stop:   make(chan struct{}),
	}
}

// newUpgrader returns the /ws upgrader. A subscriber's read deadline is
// PongWait, extended by nbio on every frame it receives (KeepaliveTime);
// pingLoop pings it every PingPeriod. Messages from subscribers are dropped.
func (h *hub) newUpgrader() *websocket.Upgrader {
	u := websocket.NewUpgrader()
	u.KeepaliveTime = contract.PongWait
	u.MessageLengthLimit = contract.MaxEchoMessageBytes
	u.CheckOrigin = func(r *http.Request) bool { return true }
	// OnOpen runs inside Upgrade, before any OnClose of the connection.
	u.OnOpen(func(c *websocket.Conn) {
		c.SetSession(&subscriber{conn: c})
	})
	u.OnMessage(func(c *websocket.Conn, messageType websocket.MessageType, data []byte) {})
	u.OnClose(func(c *websocket.Conn, err error) {
		if s, ok := c.Session().(*subscriber); ok {
			h.remove(s)
		}
	})
	return u
}

// serveWs upgrades and subscribes.
func (h *hub) serveWs(u *websocket.Upgrader, w http.ResponseWriter, r *http.Request) {
	topics, ok := contract.ParseTopics(r.URL.Query().Get("topics"))
	if !ok {
		http.Error(w, "invalid or missing topics", http.StatusBadRequest)
		return
	}
	c, err := u.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the client.
	}
	s, _ := c.Session().(*subscriber)
	if s == nil {
		_ = c.Close()
		return
	}
	h.add(s, topics)
}

// add subscribes s to topics, unless it has closed meanwhile.
func (h *hub) add(s *subscriber, topics []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if s.closed {
		return
	}
	s.topics = topics
	h.subs[s] = struct{}{}
	for _, name := range topics {
		t := h.topicLocked(name)
		t.mu.Lock()
		t.subs[s.conn] = struct{}{}
		t.mu.Unlock()
	}
	h.connections.Add(1)
}

// remove unsubscribes s for good.
func (h *hub) remove(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s.closed = true
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	for _, name := range s.topics {
		t := h.topics[name]
		t.mu.Lock()
		delete(t.subs, s.conn)
		t.mu.Unlock()
	}
	h.connections.Add(-1)
}

// topicLocked returns the named topic, creating it. h.mu must be held.
func (h *hub) topicLocked(name string) *topic {
	t := h.topics[name]
	if t == nil {
		t = &topic{subs: make(map[*websocket.Conn]struct{})}
		h.topics[name] = t
	}
	return t
}

// publish is the contract.PublishFunc.
func (h *hub) publish(name string, data []byte) uint64 {
	h.mu.Lock()
	t := h.topicLocked(name)
	h.mu.Unlock()

	t.mu.Lock()
	defer t.mu.Unlock()
	t.seq++
	msg := contract.Envelope(name, t.seq, data)
	for c := range t.subs {
		_ = c.WriteMessage(websocket.TextMessage, msg)
	}
	return t.seq
}

// pingLoop pings every subscriber every PingPeriod.
func (h *hub) pingLoop() {
	ticker := time.NewTicker(contract.PingPeriod)
	defer ticker.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-ticker.C:
		}
		h.mu.Lock()
		for s := range h.subs {
			_ = s.conn.WriteMessage(websocket.PingMessage, nil)
		}
		h.mu.Unlock()
	}
}

func (h *hub) stopPinging() { close(h.stop) }
