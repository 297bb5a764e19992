package main

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/fanout/fanout/bench/peers/internal/contract"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// subscriber is one /ws connection. Its reader goroutine is the only reader;
// any goroutine may write, holding mu.
type subscriber struct {
	conn   net.Conn
	topics []string

	mu sync.Mutex // serializes writes to conn
}

// write writes one whole frame (or frames) to the connection within
// contract.WriteWait. A failed write closes the connection, which ends its
// reader goroutine, which unsubscribes it.
func (s *subscriber) write(p []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_ = s.conn.SetWriteDeadline(time.Now().Add(contract.WriteWait))
	if _, err := s.conn.Write(p); err != nil {
		_ = s.conn.Close()
		return err
	}
	return nil
}

// topic is a topic's subscribers and sequence.
type topic struct {
	pub     sync.Mutex // held through a publish, so seq order is delivery order
	seq     uint64     // guarded by pub
	scratch []*subscriber

	subs map[*subscriber]struct{} // guarded by hub.mu
}

// hub is the set of subscribers and topics.
type hub struct {
	mu     sync.RWMutex
	topics map[string]*topic
	subs   map[*subscriber]struct{}
	closed bool

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

// serveWs upgrades, subscribes and starts the subscriber's reader goroutine.
func (h *hub) serveWs(w http.ResponseWriter, r *http.Request) {
	topics, ok := contract.ParseTopics(r.URL.Query().Get("topics"))
	if !ok {
		http.Error(w, "invalid or missing topics", http.StatusBadRequest)
		return
	}
	conn, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return // UpgradeHTTP has answered the client.
	}
	s := &subscriber{conn: conn, topics: topics}
	if !h.add(s) {
		_ = conn.Close()
		return
	}
	go h.readLoop(s, source(conn, rw))
}

// readLoop reads the subscriber's frames until the connection fails or
// closes, answering control frames; data frames are dropped. Any frame
// extends the read deadline by PongWait.
func (h *hub) readLoop(s *subscriber, src io.Reader) {
	defer func() {
		h.remove(s)
		_ = s.conn.Close()
	}()
	rd := &wsutil.Reader{
		Source:         src,
		State:          ws.StateServerSide,
		CheckUTF8:      true,
		MaxMessageSize: contract.MaxEchoMessageBytes,
		OnIntermediate: s.handleControl,
	}
	for {
		_ = s.conn.SetReadDeadline(time.Now().Add(contract.PongWait))
		hdr, err := rd.NextFrame()
		if err != nil {
			return
		}
		if hdr.OpCode.IsControl() {
			if err := s.handleControl(hdr, rd); err != nil {
				return
			}
			continue
		}
		if err := rd.Discard(); err != nil {
			return
		}
	}
}

// handleControl answers a control frame: a pong for a ping, a close for a
// close (and then wsutil.ClosedError). The payload is read before the write
// lock is taken, so a slow client cannot hold the lock.
func (s *subscriber) handleControl(hdr ws.Header, r io.Reader) error {
	payload, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	var out bytes.Buffer
	err = wsutil.ControlHandler{
		Src:                 bytes.NewReader(payload),
		Dst:                 &out,
		State:               ws.StateServerSide,
		DisableSrcCiphering: true,
	}.Handle(hdr)
	if out.Len() > 0 {
		if werr := s.write(out.Bytes()); werr != nil && err == nil {
			err = werr
		}
	}
	return err
}

func (h *hub) add(s *subscriber) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.subs[s] = struct{}{}
	for _, name := range s.topics {
		h.topicLocked(name).subs[s] = struct{}{}
	}
	h.connections.Add(1)
	return true
}

func (h *hub) remove(s *subscriber) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if _, ok := h.subs[s]; !ok {
		return
	}
	delete(h.subs, s)
	for _, name := range s.topics {
		delete(h.topics[name].subs, s)
	}
	h.connections.Add(-1)
}

// topicLocked returns the named topic, creating it. h.mu must be held for
// writing.
func (h *hub) topicLocked(name string) *topic {
	t := h.topics[name]
	if t == nil {
		t = &topic{subs: make(map[*subscriber]struct{})}
		h.topics[name] = t
	}
	return t
}

func (h *hub) topic(name string) *topic {
	h.mu.RLock()
	t := h.topics[name]
	h.mu.RUnlock()
	if t != nil {
		return t
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.topicLocked(name)
}

// publish is the contract.PublishFunc. It compiles the frame once and writes
// it to each subscriber in turn; a subscriber that cannot take it within
// WriteWait is disconnected.
func (h *hub) publish(name string, data []byte) uint64 {
	t := h.topic(name)
	t.pub.Lock()
	defer t.pub.Unlock()
	t.seq++
	frame, err := ws.CompileFrame(ws.NewTextFrame(contract.Envelope(name, t.seq, data)))
	if err != nil {
		panic(err) // only a frame of reserved opcode fails
	}
	h.mu.RLock()
	for s := range t.subs {
		t.scratch = append(t.scratch, s)
	}
	h.mu.RUnlock()
	for _, s := range t.scratch {
		_ = s.write(frame)
	}
	clear(t.scratch)
	t.scratch = t.scratch[:0]
	return t.seq
}

// pingLoop pings every subscriber every PingPeriod.
func (h *hub) pingLoop() {
	ticker := time.NewTicker(contract.PingPeriod)
	defer ticker.Stop()
	var subs []*subscriber
	for {
		select {
		case <-h.stop:
			return
		case <-ticker.C:
		}
		h.mu.RLock()
		for s := range h.subs {
			subs = append(subs, s)
		}
		h.mu.RUnlock()
		for _, s := range subs {
			_ = s.write(ws.CompiledPing)
		}
		clear(subs)
		subs = subs[:0]
	}
}

// shutdown sends every subscriber a close frame (1001 going away) and closes
// it.
func (h *hub) shutdown() {
	close(h.stop)
	h.mu.Lock()
	h.closed = true
	subs := make([]*subscriber, 0, len(h.subs))
	for s := range h.subs {
		subs = append(subs, s)
	}
	h.mu.Unlock()
	for _, s := range subs {
		_ = s.write(ws.CompiledCloseGoingAway)
		_ = s.conn.Close()
	}
}
