package main

import (
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout/fanout/bench/peers/internal/contract"
	"github.com/lxzan/gws"
)

// sessionTopics is the session key of a subscriber's topics, stored by
// Authorize during the upgrade.
const sessionTopics = "topics"

// topic is a topic's subscribers and sequence, guarded by its mu. Broadcast
// only queues the frame, so a publish holds mu throughout and every
// subscriber's queue gets the messages in seq order.
type topic struct {
	mu   sync.Mutex
	seq  uint64
	subs map[*gws.Conn]struct{}
}

// hub is the gws.Event of /ws connections and the set of subscribers and
// topics.
type hub struct {
	mu     sync.Mutex
	topics map[string]*topic
	subs   map[*gws.Conn]struct{}
	closed bool

	connections atomic.Int64 // subscribed connections, for /stats
	stop        chan struct{}
}

func newHub() *hub {
	return &hub{
		topics: make(map[string]*topic),
		subs:   make(map[*gws.Conn]struct{}),
		stop:   make(chan struct{}),
	}
}

// option is serverOption with Authorize, which rejects a request without
// valid topics and keeps the topics in the session (as the chatroom example
// keeps its user name).
func (h *hub) option() *gws.ServerOption {
	opt := serverOption()
	opt.Authorize = func(r *http.Request, session gws.SessionStorage) bool {
		topics, ok := contract.ParseTopics(r.URL.Query().Get("topics"))
		if !ok {
			return false
		}
		session.Store(sessionTopics, topics)
		return true
	}
	return opt
}

func topicsOf(socket *gws.Conn) []string {
	v, _ := socket.Session().Load(sessionTopics)
	topics, _ := v.([]string)
	return topics
}

// OnOpen subscribes the connection and sets its deadline, which every frame
// from the client extends by PongWait (the README sets it in OnOpen and
// OnPing); pingLoop pings it every PingPeriod.
func (h *hub) OnOpen(socket *gws.Conn) {
	_ = socket.SetDeadline(time.Now().Add(contract.PongWait))
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		_ = socket.WriteClose(1001, nil)
		return
	}
	h.subs[socket] = struct{}{}
	for _, name := range topicsOf(socket) {
		t := h.topicLocked(name)
		t.mu.Lock()
		t.subs[socket] = struct{}{}
		t.mu.Unlock()
	}
	h.connections.Add(1)
}

// OnClose unsubscribes the connection.
func (h *hub) OnClose(socket *gws.Conn, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[socket]; !ok {
		return
	}
	delete(h.subs, socket)
	for _, name := range topicsOf(socket) {
		t := h.topics[name]
		t.mu.Lock()
		delete(t.subs, socket)
		t.mu.Unlock()
	}
	h.connections.Add(-1)
}

func (h *hub) OnPing(socket *gws.Conn, payload []byte) {
	_ = socket.SetDeadline(time.Now().Add(contract.PongWait))
	_ = socket.WritePong(payload)
}

func (h *hub) OnPong(socket *gws.Conn, payload []byte) {
	_ = socket.SetDeadline(time.Now().Add(contract.PongWait))
}

// OnMessage drops what a subscriber sends.
func (h *hub) OnMessage(socket *gws.Conn, message *gws.Message) {
	defer message.Close()
	_ = socket.SetDeadline(time.Now().Add(contract.PongWait))
}

// topicLocked returns the named topic, creating it. h.mu must be held.
func (h *hub) topicLocked(name string) *topic {
	t := h.topics[name]
	if t == nil {
		t = &topic{subs: make(map[*gws.Conn]struct{})}
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
	b := gws.NewBroadcaster(gws.OpcodeText, contract.Envelope(name, t.seq, data))
	for socket := range t.subs {
		_ = b.Broadcast(socket)
	}
	_ = b.Close()
	return t.seq
}

// pingLoop pings every subscriber every PingPeriod, with one Broadcaster of a
// ping frame.
func (h *hub) pingLoop() {
	ticker := time.NewTicker(contract.PingPeriod)
	defer ticker.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-ticker.C:
		}
		b := gws.NewBroadcaster(gws.OpcodePing, nil)
		h.mu.Lock()
		for socket := range h.subs {
			_ = b.Broadcast(socket)
		}
		h.mu.Unlock()
		_ = b.Close()
	}
}

// shutdown sends every subscriber a close frame (1001 going away); gws then
// closes the connection.
func (h *hub) shutdown() {
	close(h.stop)
	h.mu.Lock()
	h.closed = true
	subs := make([]*gws.Conn, 0, len(h.subs))
	for socket := range h.subs {
		subs = append(subs, socket)
	}
	h.mu.Unlock()
	for _, socket := range subs {
		_ = socket.WriteClose(1001, nil)
	}
}
