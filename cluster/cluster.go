// Package cluster joins fanout nodes through NATS JetStream: it implements
// broadcast.Broker. Every publish, through whichever node, is stored in one
// JetStream stream with its topic's next seq, agreed by optimistic
// concurrency on the subject's last sequence (no coordinator of fanout's
// own), and each node consumes the subjects of the topics it has
// subscribers for.
//
// A topic's messages live on the subject PREFIX.NAME, where a "." of the
// topic's name becomes "%" (a character no topic has), so that a name is one
// subject token. Each message carries its seq and its topic's epoch in the
// headers Fanout-Seq and Fanout-Epoch.
package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/fanout/fanout/broadcast"
)

// Config configures a Broker. Zero fields take the defaults below.
type Config struct {
	// URLs are the NATS servers to connect to, as nats.Connect takes them.
	URLs []string
	// Creds is a NATS credentials file (a user JWT and its nkey seed).
	// Empty: none.
	Creds string
	// Stream names the JetStream stream. Default: FANOUT.
	Stream string
	// SubjectPrefix is the first token of the topics' subjects. Default:
	// fanout.
	SubjectPrefix string
	// HistorySize is the messages the stream keeps per topic
	// (MaxMsgsPerSubject, with two more for markers), at least 1: the last
	// message names the seq the next one takes. Default: 1000.
	HistorySize int
	// HistoryAge is how long the stream keeps a message (MaxAge).
	// Default: 5 minutes.
	HistoryAge time.Duration
	// Logger receives connection changes. Default: slog.Default().
	Logger *slog.Logger
}

func (cfg Config) withDefaults() Config {
	if cfg.Stream == "" {
		cfg.Stream = "FANOUT"
	}
	if cfg.SubjectPrefix == "" {
		cfg.SubjectPrefix = "fanout"
	}
	if cfg.HistorySize == 0 {
		cfg.HistorySize = 1000
	}
	cfg.HistorySize = max(cfg.HistorySize, 1)
	if cfg.HistoryAge <= 0 {
		cfg.HistoryAge = 5 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg
}

// Headers of a stored message.
const (
	seqHeader   = "Fanout-Seq"
	epochHeader = "Fanout-Epoch"
)

// Broker is a broadcast.Broker on NATS JetStream. Its methods are safe for
// concurrent use.
type Broker struct {
	cfg    Config
	log    *slog.Logger
	nc     *nats.Conn
	js     jetstream.JetStream
	stream jetstream.Stream

	idPrefix string        // this broker's part of every Nats-Msg-Id
	nextID   atomic.Uint64 // the other part

	// connected follows nats.go's connection handlers, so that asking
	// never waits: nc.IsConnected takes nc's lock, which nats.go holds
	// through a whole reconnect attempt (a dial and the handshake, up to
	// seconds against a NATS that does not answer). The hub asks with a
	// topic's lock held (Connected), and a publish or a watch refused for
	// want of NATS is refused at once.
	connected atomic.Bool

	heads heads

	mu      sync.Mutex
	watches map[*watch]struct{} // running, for keepLoop and checkStream
	// marks are the last messages the watches had received when NATS was
	// lost, each kept until checkStream has checked it; outages counts the
	// losses, so that a check that one overtook takes nothing.
	marks   []streamMark
	outages uint64
	stop    chan struct{} // closed by Close
	done    chan struct{} // closed when keepLoop returns
}

// streamMark is the last message a watch had received: its head.
type streamMark struct {
	w    *watch
	last head
}

var _ broadcast.Broker = (*Broker)(nil)

// Dial connects to NATS and creates the stream, or updates it to cfg's
// limits. It fails if NATS cannot be reached now; once connected, the
// broker reconnects on its own, for ever, and Publish fails meanwhile.
func Dial(ctx context.Context, cfg Config) (*Broker, error) {
	cfg = cfg.withDefaults()
	if len(cfg.URLs) == 0 {
		return nil, errors.New("cluster: no NATS URL")
	}
	if strings.ContainsAny(cfg.SubjectPrefix, " *>") || strings.HasPrefix(cfg.SubjectPrefix, ".") || strings.HasSuffix(cfg.SubjectPrefix, ".") {
		return nil, fmt.Errorf("cluster: subject prefix %q is not a subject without wildcards", cfg.SubjectPrefix)
	}
	b := &Broker{cfg: cfg, log: cfg.Logger, idPrefix: nuid.Next()}
	b.heads.m = make(map[string]head)
	b.watches = make(map[*watch]struct{})
	b.stop, b.done = make(chan struct{}), make(chan struct{})
	opts := []nats.Option{
		nats.Name("fanout"),
		nats.MaxReconnects(-1),
		nats.CustomReconnectDelay(reconnectDelay),
		// Disconnected, a publish fails at once rather than wait in a
		// buffer for NATS to come back.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			b.connected.Store(false)
			b.markWatches()
			b.log.Warn("NATS disconnected: publishes are refused until it is back", "err", err)
			// The NATS that comes back may have lost its store: no
			// publish may build on a message it no longer holds.
			b.heads.clearAll()
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.connected.Store(true)
			b.log.Info("NATS reconnected", "url", nc.ConnectedUrlRedacted())
			go b.checkStream(b.outage())
		}),
		nats.ClosedHandler(func(*nats.Conn) { b.connected.Store(false) }),
		nats.ErrorHandler(func(_ *nats.Conn, _ *nats.Subscription, err error) {
			b.log.Warn("NATS error", "err", err)
		}),
	}
	if cfg.Creds != "" {
		opts = append(opts, nats.UserCredentials(cfg.Creds))
	}
	// Before Connect: its handlers, which run after, set it from then on.
	b.connected.Store(true)
	nc, err := nats.Connect(strings.Join(cfg.URLs, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connect to NATS at %s: %w", strings.Join(cfg.URLs, ","), err)
	}
	b.nc = nc
	if b.js, err = jetstream.New(nc); err != nil {
		nc.Close()
		return nil, fmt.Errorf("cluster: JetStream: %w", err)
	}
	if b.stream, err = b.ensureStream(ctx); err != nil {
		nc.Close()
		return nil, err
	}
	go b.keepLoop()
	b.log.Info("NATS connected", "url", nc.ConnectedUrlRedacted(), "stream", cfg.Stream, "subjects", cfg.SubjectPrefix+".>")
	return b, nil
}

// reconnectDelay is the wait before reconnect attempt n (counted from 1
// after each disconnect, per server tried): 250 ms doubling up to 8 s, and
// up to half as much again at random, so that the nodes of a cluster do not
// come back in step.
func reconnectDelay(n int) time.Duration {
	d := min(250*time.Millisecond<<min(max(n-1, 0), 5), 8*time.Second)
	return d + rand.N(d/2+1)
}

// ensureStream creates the stream, or updates it to the broker's limits.
func (b *Broker) ensureStream(ctx context.Context) (jetstream.Stream, error) {
	cfg := b.cfg
	stream, err := b.js.CreateOrUpdateStream(ctx, jetstream.StreamConfig{
		Name:     cfg.Stream,
		Subjects: []string{cfg.SubjectPrefix + ".>"},
		// Two more than history: the markers that keep a quiet topic
		// (keepLoop) push no message out.
		MaxMsgsPerSubject: int64(cfg.HistorySize) + 2,
		MaxAge:            cfg.HistoryAge,
		Duplicates:        min(2*time.Minute, cfg.HistoryAge),
		Storage:           jetstream.FileStorage,
		Discard:           jetstream.DiscardOld,
		AllowDirect:       true,
	})
	if err != nil {
		return nil, fmt.Errorf("cluster: create stream %s over %s.>: %w", cfg.Stream, cfg.SubjectPrefix, err)
	}
	return stream, nil
}

// checkStream makes the stream anew after a reconnect to a NATS that lost
// it (its store), trying until it can or the broker closes, and tells each
// watch's topic whose messages NATS no longer holds (see gone) that its
// history is gone. The ordered consumers would otherwise go on from their
// old stream sequences, past the new stream's first messages. What a try
// has checked stays checked: a retry goes on with the rest.
func (b *Broker) checkStream(gen uint64) {
	for wait := 250 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		err := b.recheck(gen)
		if errors.Is(err, errStale) {
			b.log.Debug("NATS was lost again during the check after a reconnect: the next reconnect's check goes on from the marks", "stream", b.cfg.Stream)
		}
		if err == nil || errors.Is(err, errStale) {
			return
		}
		b.log.Warn("NATS reconnected, but the stream could not be made or read; trying again", "err", err, "in", wait)
		select {
		case <-b.stop:
			return
		case <-time.After(wait):
		}
		if !b.connected.Load() {
			return // the next reconnect checks again
		}
	}
}

// Bounds of a reconnect's check: each NATS request has its own time, and
// the topics are read a few at a time, so that a node watching many topics
// over a slow link still gets through them.
const (
	checkRequestTimeout = 5 * time.Second
	checkReads          = 8
)

// recheck is one try of checkStream, for the reconnect after outage gen.
func (b *Broker) recheck(gen uint64) error {
	ctx, cancel := context.WithTimeout(context.Background(), checkRequestTimeout)
	stream, err := b.ensureStream(ctx)
	cancel()
	if err != nil {
		return err
	}
	b.mu.Lock()
	marks := slices.Clone(b.marks)
	b.mu.Unlock()
	var latest uint64
	for _, m := range marks {
		latest = max(latest, m.last.stream)
	}
	// A stream that went back lost its store: every topic is gone.
	wentBack := stream.CachedInfo().State.LastSeq < latest
	gone := make([]bool, len(marks))
	errs := make([]error, len(marks))
	if wentBack {
		for i := range gone {
			gone[i] = true
		}
	} else {
		var wg sync.WaitGroup
		reads := make(chan struct{}, checkReads)
		for i, m := range marks {
			reads <- struct{}{}
			wg.Go(func() {
				defer func() { <-reads }()
				ctx, cancel := context.WithTimeout(context.Background(), checkRequestTimeout)
				defer cancel()
				gone[i], errs[i] = b.gone(ctx, stream, m)
			})
		}
		wg.Wait()
	}
	lost, unchecked, err := b.applyCheck(gen, marks, gone, errs)
	if err != nil {
		return err
	}
	if len(lost) > 0 {
		b.heads.clearAll()
		b.log.Warn("NATS no longer holds what watched topics had received (its store lost?): they start afresh", "stream", b.cfg.Stream, "topics", len(lost))
		for _, w := range lost {
			// No NATS round trip: the hub forgets the topic and closes
			// its subscribers, and the next subscribe starts a watch of
			// the new stream. (The hub drops what a watch it stopped
			// meanwhile delivers.)
			w.deliver(broadcast.BrokerMessage{Restart: true})
		}
	}
	if unchecked > 0 {
		var first error
		for _, err := range errs {
			first = cmp.Or(first, err)
		}
		return fmt.Errorf("cluster: %d of %d topics not checked: %w", unchecked, len(marks), first)
	}
	return nil
}

// errStale is applyCheck's answer to a check that NATS was lost again
// during: the check of the reconnect after that goes on from the marks.
var errStale = errors.New("cluster: NATS was lost again during the check")

// applyCheck takes what a check of marks found (gone, or errs for those
// not read) as checked, and returns the watches whose topics are gone and
// how many marks are left to check. If NATS was lost again since the check
// began (gen is an older outage's count), it takes nothing and returns
// errStale: its reads may predate that outage, and the marks kept are what
// the next reconnect must check.
func (b *Broker) applyCheck(gen uint64, marks []streamMark, gone []bool, errs []error) (lost []*watch, unchecked int, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.outages != gen {
		return nil, 0, errStale
	}
	checked := make(map[*watch]bool, len(marks))
	for i, m := range marks {
		if errs[i] != nil {
			continue
		}
		checked[m.w] = true
		m.w.mu.Lock()
		m.w.unchecked = false
		m.w.mu.Unlock()
		if gone[i] {
			lost = append(lost, m.w)
		}
	}
	b.marks = slices.DeleteFunc(b.marks, func(m streamMark) bool { return checked[m.w] })
	return lost, len(b.marks), nil
}

// outage returns how many times NATS was lost: a reconnect's check is for
// the latest.
func (b *Broker) outage() uint64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.outages
}

// markWatches notes, when NATS is lost, the last message each watch has
// received, for checkStream to check. A watch marked and not yet checked
// keeps its mark: what it receives after a reconnect may come from a stream
// made anew. A watch marked stores no keep marker until it is checked.
func (b *Broker) markWatches() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.outages++
	for w := range b.watches {
		w.mu.Lock()
		if !w.unchecked && w.last.stream != 0 {
			b.marks = append(b.marks, streamMark{w, w.last})
			w.unchecked = true
		}
		w.mu.Unlock()
	}
}

// gone reports whether stream no longer holds what m's watch had received:
// its subject now ends before m, or in another epoch, or holds nothing.
// That is the evidence of a store lost (or of a topic that aged out while
// the node was away), not the stream's creation time, which nats-server
// 2.9 reports anew after a restart on an intact store.
func (b *Broker) gone(ctx context.Context, stream jetstream.Stream, m streamMark) (bool, error) {
	msg, err := stream.GetLastMsgForSubject(ctx, m.w.subj)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return true, nil
	case err != nil:
		return false, fmt.Errorf("cluster: read the last message of %s: %w", m.w.subj, err)
	}
	if msg.Sequence < m.last.stream {
		return true, nil
	}
	h, err := headOf(msg.Sequence, msg.Header)
	// A message fanout did not store tells no epoch; its place does.
	return err == nil && h.epoch != m.last.epoch, nil
}

// Connected reports whether the broker is connected to NATS, as its last
// connection event said. It never waits.
func (b *Broker) Connected() bool { return b.connected.Load() }

// Close stops the watches, deletes their consumers, and closes the
// connection to NATS.
func (b *Broker) Close() {
	b.mu.Lock()
	select {
	case <-b.stop:
	default:
		close(b.stop)
	}
	var watches []*watch
	for w := range b.watches {
		watches = append(watches, w)
	}
	clear(b.watches)
	b.mu.Unlock()
	<-b.done
	// The node's consumers go with it, rather than idle on the server
	// for consumerIdle; within a few seconds in all, or they are left to
	// it (a consumer's Stop may wait for its reset while NATS is away).
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	deleted := make(chan struct{})
	go func() {
		defer close(deleted)
		for _, w := range watches {
			if ctx.Err() != nil {
				return
			}
			w.cc.Stop()
			w.deleteConsumer(ctx)
		}
	}()
	select {
	case <-deleted:
	case <-ctx.Done():
	}
	b.nc.Close()
}

// subject returns topic's subject.
func (b *Broker) subject(topic string) string {
	return b.cfg.SubjectPrefix + "." + strings.ReplaceAll(topic, ".", "%")
}

// head is what a node knows of a topic's last stored message: its stream
// sequence (0: none), seq and epoch.
type head struct {
	stream uint64
	seq    uint64
	epoch  string
}

// heads caches the last message of the topics published or watched here,
// so that a publish needs no read first unless another node published
// since. It is bounded by emptying it when full.
type heads struct {
	mu sync.Mutex
	m  map[string]head
}

// maxHeads bounds the topics heads remembers.
const maxHeads = 10_000

func (hs *heads) get(topic string) (head, bool) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	h, ok := hs.m[topic]
	return h, ok
}

// put remembers h, a message a watch received, unless a later message of
// topic is known.
func (hs *heads) put(topic string, h head) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	if old, ok := hs.m[topic]; ok && old.stream >= h.stream {
		return
	}
	hs.setLocked(topic, h)
}

// set remembers h, a message just stored, whatever was known: after the
// stream is purged or made anew, its sequences start again from 1.
func (hs *heads) set(topic string, h head) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	hs.setLocked(topic, h)
}

// clearAll forgets every head: after the stream was made anew, they name
// messages of the old one.
func (hs *heads) clearAll() {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	clear(hs.m)
}

func (hs *heads) setLocked(topic string, h head) {
	if _, ok := hs.m[topic]; !ok && len(hs.m) >= maxHeads {
		clear(hs.m)
	}
	hs.m[topic] = h
}
