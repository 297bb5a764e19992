package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// Options configure a Client. The zero value works for a server without
// authentication.
type Options struct {
	// Token returns the token to connect with. It is called before every
	// connection attempt, so that it can hand out a fresh one after the
	// server closed the connection for an expired token (4001) or refused
	// it (401). Nil: connect without a token; then a 4001 or a 401 ends the
	// client.
	Token func(ctx context.Context) (string, error)
	// StaticToken, when Token is nil, is a fixed token to connect with: a
	// 4001 or a 401 ends the client, as there is no other to try.
	StaticToken string
	// OnEvent receives the client's events (see Event), on its read loop,
	// or, for the first connection's, on the goroutine that calls Dial;
	// never two at once. It must not block for long, nor call Close.
	OnEvent func(Event)
	// MinBackoff and MaxBackoff bound the wait between connection
	// attempts: exponential, with full jitter. Defaults: 100 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// DialTimeout bounds one connection attempt, and a write. Default: 10 s.
	DialTimeout time.Duration
	// MaxMessageBytes is the longest message the client reads. Default:
	// 1 MiB.
	MaxMessageBytes int64
	// HTTPClient makes the handshakes and the publishes. Default:
	// http.DefaultClient.
	HTTPClient *http.Client
	// PublishURL is where Publish posts. Default: the URL given to Dial
	// with http(s) for ws(s) and the path /publish.
	PublishURL string
}

// withDefaults returns a copy of *o, or of the zero Options if o is nil,
// with the defaults filled in.
func (o *Options) withDefaults() Options {
	var d Options
	if o != nil {
		d = *o
	}
	if d.MinBackoff <= 0 {
		d.MinBackoff = 100 * time.Millisecond
	}
	if d.MaxBackoff <= 0 {
		d.MaxBackoff = 30 * time.Second
	}
	d.MaxBackoff = max(d.MaxBackoff, d.MinBackoff)
	if d.DialTimeout <= 0 {
		d.DialTimeout = 10 * time.Second
	}
	if d.MaxMessageBytes <= 0 {
		d.MaxMessageBytes = 1 << 20
	}
	if d.HTTPClient == nil {
		d.HTTPClient = http.DefaultClient
	}
	return d
}

// Errors of the client.
var (
	ErrClosed            = errors.New("client: closed")
	ErrAlreadySubscribed = errors.New("client: already subscribed")
	ErrNotSubscribed     = errors.New("client: not subscribed")
	// ErrTokenExpired ends a client without Options.Token whose connection
	// was closed for its token's expiry (4001).
	ErrTokenExpired = errors.New("client: token expired, and no Options.Token to get another")
)

// errSameToken is a connection attempt not made: Options.Token returned
// the token that the server refused or expired.
var errSameToken = errors.New("client: Options.Token returned the token the server refused or expired; waiting for another")

// HandshakeError is a connection attempt that the server answered with an
// HTTP status instead of a WebSocket.
type HandshakeError struct {
	Status int
	Err    error
}

func (e *HandshakeError) Error() string {
	return fmt.Sprintf("client: handshake refused with %d %s: %v", e.Status, http.StatusText(e.Status), e.Err)
}

func (e *HandshakeError) Unwrap() error { return e.Err }

// final reports whether retrying cannot help: the request itself is wrong
// (400, 403, 404), or unauthorized with no way to get another token.
func (e *HandshakeError) final(canRefresh bool) bool {
	switch e.Status {
	case http.StatusBadRequest, http.StatusForbidden, http.StatusNotFound:
		return true
	case http.StatusUnauthorized:
		return !canRefresh
	}
	return false
}

// Client is a subscriber of fanout's wire protocol v1 that keeps its
// subscriptions across reconnects: it resubscribes every topic with the
// last seq and epoch it delivered, delivers each seq once and in order,
// and reports every message it cannot deliver as a Lost event. Its methods
// are safe for concurrent use.
//
// One goroutine reads the connection and runs the handlers; there is no
// goroutine per subscription.
type Client struct {
	opts  Options
	wsURL *url.URL
	pub   *Publisher

	ctx    context.Context // the client's life; Close cancels it
	cancel context.CancelFunc
	done   chan struct{}

	// The run loop's: bo grows across connections that do not last;
	// token is the last token connected with, staleToken one the server
	// refused (401) or expired (4001): until Options.Token returns another,
	// the client does not connect.
	bo                backoff
	token, staleToken string

	wmu sync.Mutex // orders the writes of requests; taken before mu

	mu      sync.Mutex // guards the fields below, and subscription.want
	conn    *websocket.Conn
	subs    map[string]*subscription
	pending []request // requests sent on conn and not yet answered, oldest first
	lastID  uint64
	closed  bool
	err     error // why the client ended, once done
}

// subscription is the state of one topic. Its fields but handler are the
// read loop's alone once it is in Client.subs.
type subscription struct {
	topic   string
	handler Handler

	known    bool   // seq (and epoch, unless empty) come from the server
	seq      uint64 // the last delivered, or accounted for by a Lost event
	epoch    string
	awaiting bool // a subscribe is on its way: messages before its reply are not ours

	// want is the id of the subscribe whose reply is awaited, 0 for one in
	// the handshake's query. Guarded by Client.mu.
	want uint64
}

// Dial connects to the fanout server at rawURL (ws://host:port, or with a
// path such as /ws, the default) and returns a client that stays connected
// until Close. ctx bounds the first connection only: Dial retries, with
// backoff, until a connection is up, ctx ends, or the server refuses in a
// way that retrying cannot mend (400, 403, 404, or 401 without
// Options.Token).
func Dial(ctx context.Context, rawURL string, opts *Options) (*Client, error) {
	o := opts.withDefaults()
	u, err := parseURL(rawURL, true, "/ws")
	if err != nil {
		return nil, err
	}
	c := &Client{opts: o, wsURL: u, subs: make(map[string]*subscription), done: make(chan struct{})}
	c.bo = backoff{min: o.MinBackoff, max: o.MaxBackoff}
	pu := o.PublishURL
	if pu == "" {
		p := *u
		p.Scheme = strings.Replace(u.Scheme, "ws", "http", 1)
		p.Path, p.RawQuery = "/publish", ""
		pu = p.String()
	}
	if c.pub, err = NewPublisher(pu, opts); err != nil {
		return nil, err
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	conn, err := c.connectLoop(ctx)
	if err != nil {
		c.cancel()
		return nil, err
	}
	go c.run(conn)
	return c, nil
}

// Subscribe subscribes to topic; h receives its messages from the seq
// after the one that the server's answer, a Subscribed event, gives; if
// the server refuses, the answer is a Refused event.
func (c *Client) Subscribe(topic string, h Handler) error {
	if !ValidTopic(topic) || h == nil {
		return fmt.Errorf("client: Subscribe needs a handler and a topic name of ASCII letters, digits and -_.:@/, not %q", topic)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.subs[topic] != nil {
		c.mu.Unlock()
		return ErrAlreadySubscribed
	}
	conn := c.conn
	c.subs[topic] = &subscription{topic: topic, handler: h, awaiting: conn != nil}
	c.mu.Unlock()
	if conn != nil {
		c.send(conn, request{Type: "subscribe", Topic: topic})
	}
	// Without a connection, the next one subscribes it.
	return nil
}

// Unsubscribe ends the subscription to topic. Messages of topic already on
// their way are not delivered.
func (c *Client) Unsubscribe(topic string) error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	if c.subs[topic] == nil {
		c.mu.Unlock()
		return ErrNotSubscribed
	}
	delete(c.subs, topic)
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		c.send(conn, request{Type: "unsubscribe", Topic: topic})
	}
	return nil
}

// parseURL parses rawURL for a WebSocket (ws) or an HTTP endpoint: the
// scheme is made ws(s) or http(s) to match, and an empty path is path.
func parseURL(rawURL string, ws bool, path string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("client: url: %w", err)
	}
	secure := u.Scheme == "wss" || u.Scheme == "https"
	if !secure && u.Scheme != "ws" && u.Scheme != "http" {
		return nil, fmt.Errorf("client: url %q: want ws(s):// or http(s)://", rawURL)
	}
	switch {
	case ws && secure:
		u.Scheme = "wss"
	case ws:
		u.Scheme = "ws"
	case secure:
		u.Scheme = "https"
	default:
		u.Scheme = "http"
	}
	if u.Path == "" || u.Path == "/" {
		u.Path = path
	}
	return u, nil
}

// ValidTopic reports whether name is made of the characters topic names
// allow: ASCII letters, digits and -_.:@/. The server also bounds their
// length (--max-topic-bytes, 128 by default).
func ValidTopic(name string) bool {
	if name == "" {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		if !('a' <= b && b <= 'z' || 'A' <= b && b <= 'Z' || '0' <= b && b <= '9' || strings.IndexByte("-_.:@/", b) >= 0) {
			return false
		}
	}
	return true
}

// Publish publishes data, a JSON value, to topic with POST /publish (with
// the token of Options.Token or StaticToken, if any, as a bearer token) and
// returns its seq. It does not depend on the WebSocket: it works while the
// client reconnects, and it may be called from a handler.
func (c *Client) Publish(ctx context.Context, topic string, data []byte) (uint64, error) {
	return c.pub.Publish(ctx, topic, data)
}

// Close closes the connection (1000) and stops reconnecting. It waits for
// a handler that runs to return. It must not be called from a handler or
// from OnEvent.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		<-c.done
		return nil
	}
	c.closed = true
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		// Politely, while the read loop still reads the server's answer;
		// coder/websocket gives up after 5 s.
		_ = conn.Close(websocket.StatusNormalClosure, "")
	}
	c.cancel()
	<-c.done
	return nil
}

// Done is closed when the client has stopped: after Close, or when the
// server refused it for good (see Err).
func (c *Client) Done() <-chan struct{} { return c.done }

// Err returns why the client stopped, once Done is closed: nil after
// Close, or an error that reconnecting cannot mend (ErrTokenExpired, a
// HandshakeError for 400, 403, 404, or 401 without Options.Token).
func (c *Client) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

func (c *Client) emit(e Event) {
	if c.opts.OnEvent != nil {
		c.opts.OnEvent(e)
	}
}

// stableAfter is how long a connection must last for the backoff to start
// over: one that the server closes at once (a slow consumer, a rate limit)
// is retried ever more slowly.
const stableAfter = 10 * time.Second

// run reads conn, and the connections after it, until the client ends.
func (c *Client) run(conn *websocket.Conn) {
	defer close(c.done)
	for {
		up := time.Now()
		err := c.read(conn)
		_ = conn.CloseNow()
		c.mu.Lock()
		c.conn = nil
		closed := c.closed
		c.mu.Unlock()
		if closed {
			return
		}
		code := int(websocket.CloseStatus(err))
		if code < 0 {
			code = 0
		}
		c.emit(Event{Kind: Disconnected, Code: code, Err: err})
		if code == closeTokenExpired {
			if c.opts.Token == nil {
				c.end(ErrTokenExpired)
				return
			}
			c.staleToken = c.token // no reconnect until Token gives another
		}
		if time.Since(up) >= stableAfter {
			c.bo.attempt = 0
		}
		// Even the first retry waits its jitter, so that the clients of a
		// server that went away do not all come back at once.
		select {
		case <-time.After(c.bo.next()):
		case <-c.ctx.Done():
		}
		if conn, err = c.connectLoop(c.ctx); err != nil {
			c.end(err)
			return
		}
	}
}

// closeTokenExpired is the close code of a connection whose token expired.
const closeTokenExpired = 4001

// end records why the client stops, unless Close stopped it.
func (c *Client) end(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.err = err
	}
	c.closed = true
}

// connectLoop connects, retrying with backoff, until it succeeds, ctx ends
// or the server refuses for good.
func (c *Client) connectLoop(ctx context.Context) (*websocket.Conn, error) {
	for attempt := 1; ; attempt++ {
		conn, err := c.connect(ctx, true)
		var he *HandshakeError
		if errors.As(err, &he) && (he.Status == http.StatusBadRequest || he.Status == http.StatusRequestHeaderFieldsTooLarge) {
			// A topic of the query that the server refuses (a name too
			// long, more than it allows): subscribe by message instead,
			// and let it refuse each on its own.
			conn, err = c.connect(ctx, false)
		}
		if err == nil {
			c.emit(Event{Kind: Connected, Attempt: attempt})
			return conn, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if errors.As(err, &he) && he.final(c.opts.Token != nil) {
			return nil, err
		}
		c.emit(Event{Kind: Disconnected, Err: err})
		select {
		case <-time.After(c.bo.next()):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// request is a client message of the protocol.
type request struct {
	Type  string  `json:"type"`
	Topic string  `json:"topic"`
	Since *uint64 `json:"since,omitempty"`
	Epoch string  `json:"epoch,omitempty"`
	ID    uint64  `json:"id,omitempty"` // matches the reply; every request has one

	tries int // refused for the rate so far
}

// maxQueryBytes bounds the topics a handshake lists in its query, well
// under the server's header limit; the others are subscribed by message.
const maxQueryBytes = 4 << 10

// connect makes one connection and subscribes every topic on it: with
// query, those of the user's own topic space (user:...) and as many others
// as fit in the query of the handshake, the rest with subscribe messages.
func (c *Client) connect(ctx context.Context, query bool) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, c.opts.DialTimeout)
	defer cancel()
	header := http.Header{}
	if c.opts.Token != nil {
		token, err := c.opts.Token(ctx)
		if err != nil {
			return nil, fmt.Errorf("client: token: %w", err)
		}
		if c.staleToken != "" && token == c.staleToken {
			// The server refused this one: wait for another.
			return nil, errSameToken
		}
		c.token = token
		if token != "" {
			header.Set("Authorization", "Bearer "+token)
		}
	} else if c.opts.StaticToken != "" {
		header.Set("Authorization", "Bearer "+c.opts.StaticToken)
	}

	// The query: user topics first (they cannot be subscribed by message
	// on a connection whose token subscribes them already), then others
	// while they fit.
	c.mu.Lock()
	subs := make([]*subscription, 0, len(c.subs))
	for _, s := range c.subs {
		subs = append(subs, s)
	}
	c.mu.Unlock()
	var topics, since []string
	inQuery := make(map[*subscription]bool)
	size := 0
	for pass := range 2 {
		for _, s := range subs {
			if !query || inQuery[s] || (pass == 0) != strings.HasPrefix(s.topic, "user:") {
				continue
			}
			item := s.topic
			n := len(url.QueryEscape(item)) + 3 // and an escaped comma
			var si string
			if s.known {
				si = s.topic + ":" + strconv.FormatUint(s.seq, 10)
				if s.epoch != "" {
					si += "@" + s.epoch
				}
				n += len(url.QueryEscape(si)) + 3
			}
			if pass == 1 && size+n > maxQueryBytes {
				continue
			}
			size += n
			topics = append(topics, item)
			if si != "" {
				since = append(since, si)
			}
			inQuery[s] = true
			s.awaiting = true
		}
	}
	u := *c.wsURL
	q := u.Query()
	if len(topics) > 0 {
		q.Set("topics", strings.Join(topics, ","))
	}
	if len(since) > 0 {
		q.Set("since", strings.Join(since, ","))
	}
	u.RawQuery = q.Encode()

	conn, resp, err := websocket.Dial(ctx, u.String(), &websocket.DialOptions{HTTPClient: c.opts.HTTPClient, HTTPHeader: header})
	if err != nil {
		if resp != nil && resp.StatusCode != http.StatusSwitchingProtocols {
			if resp.StatusCode == http.StatusUnauthorized {
				c.staleToken = c.token
			}
			return nil, &HandshakeError{Status: resp.StatusCode, Err: err}
		}
		return nil, fmt.Errorf("client: connect: %w", err)
	}
	c.staleToken = ""
	conn.SetReadLimit(c.opts.MaxMessageBytes)

	// Subscriptions made or ended while dialing, and the rest, by message:
	// a topic of the query whose subscription ended is unsubscribed before
	// one made since is subscribed.
	var reqs []request
	c.mu.Lock()
	c.conn = conn
	c.pending = c.pending[:0]
	for s := range inQuery {
		s.want = 0
		if c.subs[s.topic] != s {
			reqs = append(reqs, request{Type: "unsubscribe", Topic: s.topic})
		}
	}
	for _, s := range c.subs {
		if inQuery[s] {
			continue
		}
		s.awaiting = true
		r := request{Type: "subscribe", Topic: s.topic}
		if s.known {
			seq := s.seq
			r.Since, r.Epoch = &seq, s.epoch
		}
		reqs = append(reqs, r)
	}
	c.mu.Unlock()
	for _, r := range reqs {
		c.send(conn, r)
	}
	return conn, nil
}

// send writes r to conn, numbered, and remembers it until it is answered.
// A failure is the read loop's to find.
func (c *Client) send(conn *websocket.Conn, r request) {
	// Under wmu, so that requests leave in the order of their ids, which
	// is the order of the answers; not under mu, which the read loop needs
	// to go on reading while a write waits for the socket.
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	if c.conn != conn {
		c.mu.Unlock()
		return // the next connection subscribes what is to be subscribed
	}
	c.lastID++
	r.ID = c.lastID
	c.pending = append(c.pending, r)
	if s := c.subs[r.Topic]; s != nil && r.Type == "subscribe" {
		s.want = r.ID
	}
	c.mu.Unlock()
	b, err := json.Marshal(r)
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(c.ctx, c.opts.DialTimeout)
	defer cancel()
	_ = conn.Write(ctx, websocket.MessageText, b)
}

// frame is a server message of the protocol: a message (no type) or a
// reply.
type frame struct {
	Type      string          `json:"type"`
	Topic     string          `json:"topic"`
	Seq       uint64          `json:"seq"`
	Data      json.RawMessage `json:"data"`
	Epoch     string          `json:"epoch"`
	Recovered bool            `json:"recovered"`
	From      uint64          `json:"from"`
	To        uint64          `json:"to"`
	Code      string          `json:"code"`
	Message   string          `json:"message"`
	ID        uint64          `json:"id"`
}

// read reads conn until it fails, delivering messages and events.
func (c *Client) read(conn *websocket.Conn) error {
	for {
		typ, p, err := conn.Read(c.ctx)
		if err != nil {
			return err
		}
		if typ != websocket.MessageText {
			continue
		}
		var f frame
		if err := json.Unmarshal(p, &f); err != nil {
			continue // not of the protocol: nothing to deliver
		}
		c.handle(conn, &f)
	}
}

// handle acts on one server message.
func (c *Client) handle(conn *websocket.Conn, f *frame) {
	// A reply or an error answers the oldest request not yet answered:
	// the server answers in order. One with an id answers that request (and
	// any before it went unanswered: refused unread); a rate_limited error
	// has no id, for the server refused the message unread, and answers the
	// oldest.
	var req request
	var refused []request
	c.mu.Lock()
	switch {
	case f.Type != "" && f.ID != 0:
		for len(c.pending) > 0 {
			head := c.pending[0]
			c.pending = c.pending[1:]
			if head.ID == f.ID {
				req = head
				f.Topic = req.Topic // which an error may echo cut short
				break
			}
			refused = append(refused, head)
		}
	case f.Type == "error" && f.Code == "rate_limited" && len(c.pending) > 0:
		req = c.pending[0]
		c.pending = c.pending[1:]
		refused = append(refused, req)
		f.Topic = req.Topic
	}
	s := c.subs[f.Topic]
	want := uint64(0)
	if s != nil {
		want = s.want
	}
	c.mu.Unlock()
	for _, r := range refused {
		c.retry(conn, r)
	}

	switch f.Type {
	case "":
		if s == nil || s.awaiting || (s.known && f.Seq <= s.seq) {
			return // not ours (yet), or a duplicate
		}
		if s.known && f.Seq > s.seq+1 {
			// A gap the server did not announce: ask again from the last
			// seq delivered, and take nothing until the answer.
			s.awaiting = true
			since := s.seq
			c.resubscribe(conn, s.topic, &since, s.epoch)
			return
		}
		s.seq, s.known = f.Seq, true
		s.handler(Message{Topic: f.Topic, Seq: f.Seq, Data: f.Data})
	case "subscribed":
		if s == nil || !s.awaiting || f.ID != want {
			return // the server's own subscription (user:...), or an answer superseded
		}
		s.awaiting = false
		switch {
		case !s.known || f.Recovered:
		case s.epoch != "" && f.Epoch != s.epoch:
			// The topic's history started afresh: what followed our seq
			// in the old epoch cannot be known, and the new epoch's
			// messages up to the reply's seq were missed.
			c.emit(Event{Kind: Lost, Topic: s.topic, From: 1, To: f.Seq, Epoch: f.Epoch, PrevEpoch: s.epoch, PrevSeq: s.seq, Reason: "new_epoch"})
		case f.Seq > s.seq:
			c.emit(Event{Kind: Lost, Topic: s.topic, From: s.seq + 1, To: f.Seq, Epoch: f.Epoch, Reason: "not_recovered"})
		}
		// A reply below the last seq delivered, in the same epoch, comes
		// from a cluster node behind the one before: it sends again what
		// was delivered. The last seq delivered stays, so that those
		// come as duplicates and are dropped.
		if !s.known || f.Epoch != s.epoch || f.Seq > s.seq {
			s.seq = f.Seq
		}
		s.epoch, s.known = f.Epoch, true
		c.emit(Event{Kind: Subscribed, Topic: s.topic, Seq: s.seq, Epoch: f.Epoch, Recovered: f.Recovered})
	case "dropped":
		if s == nil || s.awaiting || (s.known && f.To <= s.seq) {
			return
		}
		s.seq, s.known = f.To, true
		c.emit(Event{Kind: Lost, Topic: s.topic, From: f.From, To: f.To, Epoch: s.epoch, Reason: "dropped"})
	case "error":
		if f.Code == "not_subscribed" || f.Code == "rate_limited" {
			return // an unsubscribe that crossed the end of a subscription; a request asked again
		}
		ev := Event{Kind: Refused, Topic: f.Topic, ErrorCode: f.Code, Err: errors.New(f.Message)}
		if s != nil && s.awaiting && req.Type == "subscribe" && req.ID == want {
			switch f.Code {
			case "already_subscribed":
				// The server had it already: the token's own user:
				// topic, or a subscription whose unsubscribe (before a
				// subscribe from the last seq, after a gap) was refused
				// for the rate. Messages may have come, and gone, before
				// this answer, with no seq to tell where. Subscribe
				// again, for a reply that says where messages start,
				// from the same seq: what it can still replay is not
				// lost.
				c.resubscribe(conn, s.topic, req.Since, req.Epoch)
				return
			case "unavailable":
				// The server is shutting down, and the next connection
				// subscribes it; or a cluster node is cut off from NATS
				// and keeps the connection: ask again, later.
				c.retry(conn, req)
			default:
				// Asking again would be refused again: the subscription
				// ends.
				c.mu.Lock()
				if c.subs[f.Topic] == s {
					delete(c.subs, f.Topic)
				}
				c.mu.Unlock()
			}
		}
		c.emit(ev)
	}
}

// resubscribe unsubscribes topic and subscribes it again on conn, from
// since (nil: from now) in epoch.
func (c *Client) resubscribe(conn *websocket.Conn, topic string, since *uint64, epoch string) {
	c.send(conn, request{Type: "unsubscribe", Topic: topic})
	c.send(conn, request{Type: "subscribe", Topic: topic, Since: since, Epoch: epoch})
}

// retryAfter is the first wait before a request that the server refused
// unread, for the client's message rate, is sent again; it doubles with
// each refusal, for the server counts refused messages against the rate
// too, up to maxRetryAfter.
const (
	retryAfter    = time.Second
	maxRetryAfter = 30 * time.Second
)

// retry sends r again on conn in a while, if it still stands and r is
// still wanted: a subscribe whose subscription is still awaiting it, an
// unsubscribe of a topic still not subscribed.
func (c *Client) retry(conn *websocket.Conn, r request) {
	wait := maxRetryAfter
	if r.tries < 5 {
		wait = retryAfter << r.tries
	}
	r.tries++
	time.AfterFunc(wait, func() {
		c.mu.Lock()
		s := c.subs[r.Topic]
		wanted := c.conn == conn && ((r.Type == "subscribe" && s != nil && s.want == r.ID) || (r.Type == "unsubscribe" && s == nil))
		c.mu.Unlock()
		if wanted {
			c.send(conn, r)
		}
	})
}
