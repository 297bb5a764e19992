// Package broadcast is the fan-out hub: topics with ordered sequence numbers
// and history, subscribers spread over shards, and each message compiled to
// one frame that every subscriber's write queue shares.
package broadcast

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/wsconn"
)

// Policy says what happens to a subscriber whose write queue is full.
type Policy uint8

const (
	// Disconnect closes a slow consumer with CloseSlowConsumer.
	Disconnect Policy = iota
	// Drop skips the message for that subscriber, which is told by a
	// dropped notice in its place, and can recover with since.
	Drop
)

// String returns "disconnect" or "drop".
func (p Policy) String() string {
	if p == Drop {
		return "drop"
	}
	return "disconnect"
}

// ParsePolicy parses "disconnect" or "drop".
func ParsePolicy(s string) (Policy, error) {
	switch s {
	case "disconnect":
		return Disconnect, nil
	case "drop":
		return Drop, nil
	}
	return 0, fmt.Errorf("broadcast: unknown slow-consumer policy %q (want disconnect or drop)", s)
}

// CloseSlowConsumer is the close code sent to a subscriber disconnected by
// the Disconnect policy.
const CloseSlowConsumer ws.StatusCode = 4008

// CloseTopicRestarted (1012, Service Restart) closes, in a cluster, the
// subscribers of a topic whose history started afresh under them (every
// message aged out, or NATS lost its store): their seqs are of the old
// epoch, and reconnecting with since tells them what they lost.
const CloseTopicRestarted ws.StatusCode = 1012

// CloseClusterUnavailable (1013, Try Again Later) closes, in a cluster, a
// client whose subscribe waited for its topic's watch to start and the
// broker did not start it (NATS did not answer in time): reconnecting with
// since subscribes it afresh, and tells it what it missed.
const CloseClusterUnavailable ws.StatusCode = 1013

// Config configures a Hub. Zero fields take the defaults below.
type Config struct {
	// Shards is the number of shards (goroutines) that fan messages out.
	// Default: 2 × GOMAXPROCS.
	Shards int
	// InboxLen is the ops (deliveries, subscribes, leaves) a shard holds
	// before those who send it more wait for room, with no lock held.
	// Default: 1024.
	InboxLen int
	// HistorySize is the number of messages each topic keeps for recovery.
	// Default: 1000. Negative: none.
	HistorySize int
	// HistoryAge is how long a message stays in history. Default: 5 min.
	HistoryAge time.Duration
	// MaxSubscriptions limits the topics one connection subscribes to,
	// not counting its user's own (with Auth), which the hub subscribes
	// every authenticated connection to.
	// Default: 100.
	MaxSubscriptions int
	// MaxTopicBytes limits the length of a topic name. Default: 128.
	MaxTopicBytes int
	// MaxDataBytes limits the data of a published message. Default: 64 KiB.
	MaxDataBytes int
	// SlowConsumer is the policy for a subscriber whose queue is full.
	SlowConsumer Policy

	// Auth verifies the token of every /ws connection and decides what it
	// may subscribe to and publish on. Nil: no authentication; anyone may
	// do anything.
	Auth *auth.Verifier
	// PublishKey, if set, is a key that grants POST /publish on every
	// topic (sent as "Authorization: Bearer KEY"). Without Auth, it also
	// refuses publishing over WebSocket connections, which have no token,
	// unless AnonymousPublish.
	PublishKey string
	// AnonymousPublish lets WebSocket clients publish without a token when
	// PublishKey is set and Auth is not.
	AnonymousPublish bool
	// MessageRate limits the messages a client sends, per second, with
	// bursts of up to MessageBurst. Zero: no limit.
	MessageRate float64
	// MessageBurst is the bucket size of MessageRate. Default: 2 ×
	// MessageRate, at least 1.
	MessageBurst int
	// MaxTopics bounds the topics the hub holds. A publish or subscribe
	// that would create one more is refused (ErrTooManyTopics). Default:
	// 100,000.
	MaxTopics int
	// MaxHistoryBytes bounds the history of all topics together, each
	// entry counting its frame and 64 bytes; past it the oldest entries,
	// whichever their topic, are dropped. Default: 256 MiB; negative: no
	// bound but HistorySize and HistoryAge.
	MaxHistoryBytes int64
	// ByteRate limits the bytes a client sends, per second, in the same
	// bucket as MessageRate (and only with it): a message costs
	// max(1, its bytes × MessageRate / ByteRate) of the bucket. Zero: every
	// message costs 1.
	ByteRate float64
	// CompressMinBytes is the smallest message payload (its frame without
	// the header) compressed for the subscribers whose connection
	// negotiated permessage-deflate (wsconn.Conn.Compressed); smaller ones
	// go plain, as does one that would not shrink. A message is compressed
	// once, when its first such subscriber needs it. Default: 256;
	// negative: never compress.
	CompressMinBytes int
	// Broker, if set, makes the hub a node of a cluster (see Broker):
	// publishes are stored through it, and each node's subscribers get
	// every node's messages. Nil: a single node.
	Broker Broker
	// Logger receives the hub's logs. Default: slog.Default().
	Logger *slog.Logger
}

func (cfg Config) withDefaults() Config {
	if cfg.Shards <= 0 {
		cfg.Shards = 2 * runtime.GOMAXPROCS(0)
	}
	if cfg.InboxLen <= 0 {
		cfg.InboxLen = 1024
	}
	if cfg.CompressMinBytes == 0 {
		cfg.CompressMinBytes = 256
	}
	if cfg.HistorySize == 0 {
		cfg.HistorySize = 1000
	}
	if cfg.HistoryAge <= 0 {
		cfg.HistoryAge = 5 * time.Minute
	}
	if cfg.MaxSubscriptions <= 0 {
		cfg.MaxSubscriptions = 100
	}
	if cfg.MaxTopicBytes <= 0 {
		cfg.MaxTopicBytes = 128
	}
	if cfg.MaxDataBytes <= 0 {
		cfg.MaxDataBytes = 64 << 10
	}
	if cfg.MaxTopics <= 0 {
		cfg.MaxTopics = 100_000
	}
	if cfg.MaxHistoryBytes == 0 {
		cfg.MaxHistoryBytes = 256 << 20
	}
	if cfg.MessageRate > 0 && cfg.MessageBurst <= 0 {
		cfg.MessageBurst = max(1, int(2*cfg.MessageRate))
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg
}

// Errors returned by Publish.
var (
	ErrInvalidTopic = errors.New("broadcast: invalid topic name")
	ErrInvalidData  = errors.New("broadcast: data is not valid JSON")
	ErrTooLarge     = errors.New("broadcast: data is larger than MaxDataBytes")
	// ErrTooManyTopics: the topic does not exist, and the hub holds
	// MaxTopics already.
	ErrTooManyTopics = errors.New("broadcast: topic limit reached")
	ErrClosed        = errors.New("broadcast: hub closed")
)

// Hub holds the topics and fans each published message out to their
// subscribers. Its methods are safe for concurrent use.
type Hub struct {
	cfg    Config
	log    *slog.Logger
	shards []*shard

	mu     sync.RWMutex // guards topics
	topics map[string]*Topic

	openings openings // URL topics waiting for a replay to be written
	budget   *historyBudget

	// gate is held (read) by everything that sends ops to the shards, and
	// taken (write) by Close, so that no op is sent after the shards stop.
	gate   sync.RWMutex
	closed bool

	stop    chan struct{}
	wg      sync.WaitGroup
	started time.Time // the clock of the clients' rate buckets

	nextShardIdx  atomic.Uint64
	published     atomic.Uint64
	subscriptions atomic.Int64
	clients       atomic.Int64
	clientMsgs    atomic.Uint64
	replayed      atomic.Uint64
	authFailures  atomic.Uint64
	forbidden     atomic.Uint64
	rateLimited   atomic.Uint64
	rateCloses    atomic.Uint64
	expiryCloses  atomic.Uint64
	topicsRefused atomic.Uint64
	latency       latencyHistogram

	deflater       *wsconn.Deflater // nil: compression off
	deflateClients atomic.Int64     // clients whose connection takes compressed frames
	compressed     atomic.Uint64    // messages compressed (once each)
}

// New starts a hub with cfg. Close stops it.
func New(cfg Config) *Hub {
	h := newHub(cfg)
	for i := range h.shards {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			h.shards[i].run()
		}()
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		h.expireLoop()
	}()
	return h
}

// newHub makes a hub with cfg whose shards and expiry are not started.
func newHub(cfg Config) *Hub {
	cfg = cfg.withDefaults()
	h := &Hub{
		cfg:     cfg,
		log:     cfg.Logger,
		topics:  make(map[string]*Topic),
		budget:  newHistoryBudget(cfg.MaxHistoryBytes),
		stop:    make(chan struct{}),
		started: time.Now(),
	}
	h.deflater = newDeflater(cfg)
	h.shards = make([]*shard, cfg.Shards)
	for i := range h.shards {
		h.shards[i] = newShard(h, i)
	}
	return h
}

// Config returns the hub's configuration, defaults filled in.
func (h *Hub) Config() Config { return h.cfg }

// validTopic reports whether name is a valid topic name: 1 to MaxTopicBytes
// of ASCII letters, digits and "-_.:@/".
func (h *Hub) validTopic(name string) bool {
	return len(name) > 0 && len(name) <= h.cfg.MaxTopicBytes && auth.TopicChars(name)
}

// topic returns the named topic, creating it if need be and MaxTopics
// allows.
func (h *Hub) topic(name string) (*Topic, error) {
	h.mu.RLock()
	t := h.topics[name]
	h.mu.RUnlock()
	if t != nil {
		return t, nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if t = h.topics[name]; t == nil {
		if len(h.topics) >= h.cfg.MaxTopics {
			h.topicsRefused.Add(1)
			return nil, ErrTooManyTopics
		}
		t = &Topic{name: name, epoch: newEpoch(), inShard: make([]atomic.Int32, len(h.shards))}
		t.floor.Store(1)
		h.topics[name] = t
	}
	return t, nil
}

// lockTopic returns the named topic, created if need be, with its lock
// held. A topic that expireLoop dropped meanwhile is dead, and the lookup is
// retried, so nothing is published to or subscribed on a forgotten topic.
func (h *Hub) lockTopic(name string) (*Topic, error) {
	for {
		t, err := h.topic(name)
		if err != nil {
			return nil, err
		}
		t.mu.Lock()
		if !t.dead {
			return t, nil
		}
		t.mu.Unlock()
	}
}

// enter lets the caller send ops to the shards until exit, unless the hub
// is closed.
func (h *Hub) enter() bool {
	h.gate.RLock()
	if h.closed {
		h.gate.RUnlock()
		return false
	}
	return true
}

func (h *Hub) exit() { h.gate.RUnlock() }

// Publish appends data, a JSON value, to topic as its next message and
// queues it to every subscriber. It returns the message's seq. Messages of
// one topic reach every subscriber in the order of their seq.
func (h *Hub) Publish(topic string, data []byte) (uint64, error) {
	if !h.validTopic(topic) {
		return 0, ErrInvalidTopic
	}
	if len(data) > h.cfg.MaxDataBytes {
		return 0, ErrTooLarge
	}
	// json.Valid lets invalid UTF-8 through inside strings, and a text
	// frame must be UTF-8.
	if !json.Valid(data) || !utf8.Valid(data) {
		return 0, ErrInvalidData
	}
	if h.cfg.Broker != nil {
		return h.publishThrough(topic, data)
	}
	seq, rooms, err := h.publish(topic, data)
	// Behind shards slow the publisher down here, with no lock held.
	waitRoom(rooms...)
	return seq, err
}

// publish is Publish after the checks. rooms are the channels of the
// shards that are behind (see inbox), to wait on once the locks are let go.
func (h *Hub) publish(topic string, data []byte) (seq uint64, rooms []<-chan struct{}, err error) {
	if !h.enter() {
		return 0, nil, ErrClosed
	}
	defer h.exit()
	now := time.Now() // one clock read: history's time and the fan-out timer's start
	t, err := h.lockTopic(topic)
	if err != nil {
		return 0, nil, err
	}
	rooms = h.appendLocked(t, data, now, 0)
	h.published.Add(1)
	seq = t.seq
	t.mu.Unlock()
	// Past MaxHistoryBytes the oldest history goes, with no lock held.
	h.budget.trim()
	return seq, rooms, nil
}

// appendLocked makes data t's next message: it compiles its frame, keeps
// it in history and posts it to the shards with subscribers of t, and
// returns the channels of those that are behind. gap, if not 0, is the
// first seq of the run of messages before it that subscribers are told
// they lost (see op.gap). t.mu is held.
func (h *Hub) appendLocked(t *Topic, data []byte, now time.Time, gap uint64) (rooms []<-chan struct{}) {
	t.seq++
	frame := compile(t.name, t.seq, data)
	deflated := h.deflateFor(frame)
	if h.cfg.HistorySize > 0 {
		freed := t.history.push(entry{seq: t.seq, at: now.UnixNano(), frame: frame}, h.cfg.HistorySize)
		h.budget.charge(t, t.seq, len(frame), freed)
		t.floor.Store(t.history.floor(t.seq))
	}
	// Under t.mu, so every shard sees this topic's messages in seq order;
	// post never blocks, so no worker waits for a shard with t.mu held.
	var timer *fanoutTimer
	for i, s := range h.shards {
		if t.inShard[i].Load() == 0 {
			continue // no subscriber of t there: a publish costs only the shards it needs
		}
		if timer == nil {
			// One count stays with the publisher until every shard is
			// posted to, so that none observes before the last post.
			timer = &fanoutTimer{at: now.Sub(h.started)}
			timer.left.Store(1)
		}
		timer.left.Add(1)
		if room := s.post(op{kind: opDeliver, topic: t, frame: frame, deflated: deflated, seq: t.seq, timer: timer, gap: gap}); room != nil {
			rooms = append(rooms, room)
		}
	}
	if timer != nil {
		timer.done(h)
	}
	return rooms
}

// expireLoop drops expired history and forgets topics with neither
// subscribers nor history, so that a topic's memory goes with its use, and
// lets each quiet shard's inbox give back what a burst grew (inbox.trim).
//
// It never stops the world: the topic map's lock is held to copy the list
// of topics (shared with publishers, who only read it) and then, a batch
// at a time, to forget the unused ones; each topic is expired under its own
// lock alone.
func (h *Hub) expireLoop() {
	t := time.NewTicker(min(h.cfg.HistoryAge/4, 10*time.Second))
	defer t.Stop()
	var all, unused []*Topic
	for {
		select {
		case <-h.stop:
			return
		case <-t.C:
		}
		for _, s := range h.shards {
			s.inbox.trim()
		}
		cutoff := time.Now().Add(-h.cfg.HistoryAge).UnixNano()
		all = all[:0]
		h.mu.RLock()
		for _, tp := range h.topics {
			all = append(all, tp)
		}
		h.mu.RUnlock()
		unused = unused[:0]
		for _, tp := range all {
			tp.mu.Lock()
			h.budget.release(tp.history.expire(cutoff))
			tp.floor.Store(tp.history.floor(tp.seq))
			if h.unusedLocked(tp) {
				unused = append(unused, tp)
			}
			tp.mu.Unlock()
		}
		for i := 0; i < len(unused); i += expireBatch {
			h.forget(unused[i:min(i+expireBatch, len(unused))])
		}
		// No topic is kept alive by the lists until the next sweep.
		clear(all)
		clear(unused)
	}
}

// expireBatch bounds the topics forgotten under one hold of the topic map's
// write lock.
const expireBatch = 256

// forget drops the topics of batch that are still unused (unusedLocked). A
// publish or subscribe since the sweep looked keeps its topic. The watches
// of the topics dropped are stopped after, with no lock held.
func (h *Hub) forget(batch []*Topic) {
	var stop []Watch
	h.mu.Lock()
	for _, tp := range batch {
		if !tp.mu.TryLock() {
			// In use: not unused, and the map is not held waiting.
			continue
		}
		if !tp.dead && h.unusedLocked(tp) {
			// Its history starts afresh if it comes back: new epoch.
			tp.dead = true
			tp.floor.Store(math.MaxUint64)
			delete(h.topics, tp.name)
			h.budget.release(tp.history.dropOldest(tp.seq))
			if tp.watch != nil {
				tp.watch.releaseLocked(math.MaxUint64)
				if tp.watch.w != nil {
					stop = append(stop, tp.watch.w)
				}
			}
			tp.watch = nil
		}
		tp.mu.Unlock()
	}
	h.mu.Unlock()
	for _, w := range stop {
		w.Stop()
	}
}

// Close stops accepting publishes, waits until every message already
// published has been queued to its subscribers, and stops the shards.
func (h *Hub) Close() {
	h.gate.Lock()
	if h.closed {
		h.gate.Unlock()
		return
	}
	h.closed = true
	h.gate.Unlock()
	close(h.stop)
	for _, s := range h.shards {
		s.post(op{kind: opStop}) // the last op: no room to wait for
	}
	h.wg.Wait()
}

// Stats are the hub's counters.
type Stats struct {
	Topics          int    `json:"topics"`
	Subscriptions   int64  `json:"subscriptions"`
	Clients         int64  `json:"clients"`
	MessagesIn      uint64 `json:"messages_in"`
	ClientMessages  uint64 `json:"client_messages"`
	Deliveries      uint64 `json:"deliveries"`
	Replayed        uint64 `json:"replayed"`
	Drops           uint64 `json:"drops"`
	SlowDisconnects uint64 `json:"slow_consumer_disconnects"`
	AuthFailures    uint64 `json:"auth_failures"`       // handshakes and publishes refused 401
	Forbidden       uint64 `json:"forbidden"`           // refused 403 or with error forbidden
	RateLimited     uint64 `json:"rate_limited"`        // client messages refused for their rate
	RateCloses      uint64 `json:"rate_limit_closes"`   // connections closed 1008 for sustained abuse
	ExpiryCloses    uint64 `json:"token_expiry_closes"` // connections closed 4001 at their token's exp
	TopicsRefused   uint64 `json:"topics_refused"`      // publishes and subscribes refused at MaxTopics
	HistoryMessages int64  `json:"history_messages"`    // messages held in all topics' history
	HistoryBytes    int64  `json:"history_bytes"`       // history held, as MaxHistoryBytes counts it
	HistoryEvicted  uint64 `json:"history_evicted"`     // entries dropped, oldest first, for MaxHistoryBytes
	// CompressedClients are the clients whose connection takes compressed
	// frames; MessagesCompressed, the messages compressed for them (once
	// each); CompressedDeliveries, the deliveries that went compressed,
	// and CompressedBytesSaved, the bytes those saved against the plain
	// frames.
	CompressedClients    int64  `json:"compressed_clients"`
	MessagesCompressed   uint64 `json:"messages_compressed"`
	CompressedDeliveries uint64 `json:"compressed_deliveries"`
	CompressedBytesSaved uint64 `json:"compressed_bytes_saved"`
	// NATSConnected, in a cluster (Config.Broker), says whether the broker
	// can store publishes now; absent on a single node.
	NATSConnected *bool `json:"nats_connected,omitempty"`
}

// Stats returns the hub's counters.
func (h *Hub) Stats() Stats {
	h.mu.RLock()
	topics := len(h.topics)
	h.mu.RUnlock()
	st := Stats{
		Topics:          topics,
		Subscriptions:   h.subscriptions.Load(),
		Clients:         h.clients.Load(),
		MessagesIn:      h.published.Load(),
		ClientMessages:  h.clientMsgs.Load(),
		Replayed:        h.replayed.Load(),
		AuthFailures:    h.authFailures.Load(),
		Forbidden:       h.forbidden.Load(),
		RateLimited:     h.rateLimited.Load(),
		RateCloses:      h.rateCloses.Load(),
		ExpiryCloses:    h.expiryCloses.Load(),
		TopicsRefused:   h.topicsRefused.Load(),
		HistoryMessages: h.budget.entries.Load(),
		HistoryBytes:    h.budget.bytes.Load(),
		HistoryEvicted:  h.budget.evicted.Load(),

		CompressedClients:  h.deflateClients.Load(),
		MessagesCompressed: h.compressed.Load(),
	}
	if h.cfg.Broker != nil {
		connected := h.cfg.Broker.Connected()
		st.NATSConnected = &connected
	}
	for _, s := range h.shards {
		st.Deliveries += s.deliveries.Load()
		st.Drops += s.drops.Load()
		st.SlowDisconnects += s.slowDisconnects.Load()
		st.CompressedDeliveries += s.compressedDeliveries.Load()
		st.CompressedBytesSaved += s.bytesSaved.Load()
	}
	return st
}

// clock returns the milliseconds since the hub started, the time of the
// clients' rate buckets; uint32 differences survive its wrap-around.
func (h *Hub) clock() uint32 { return uint32(time.Since(h.started).Milliseconds()) }

// nextShard spreads connections over the shards, round robin.
func (h *Hub) nextShard() *shard {
	return h.shards[h.nextShardIdx.Add(1)%uint64(len(h.shards))]
}
