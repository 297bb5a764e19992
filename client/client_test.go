package client_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/client"
	"github.com/fanout/fanout/wsconn"
)

func dial(t *testing.T, url string, opts *client.Options) *client.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	c, err := client.Dial(ctx, url, opts)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// publisher is a Client or a Publisher.
type publisher interface {
	Publish(ctx context.Context, topic string, data []byte) (uint64, error)
}

func publish(t *testing.T, c publisher, topic string, i int) uint64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	seq, err := c.Publish(ctx, topic, fmt.Appendf(nil, `{"i":%d}`, i))
	require.NoError(t, err)
	return seq
}

// want returns 1..n.
func want(n int) []uint64 {
	out := make([]uint64, n)
	for i := range out {
		out[i] = uint64(i + 1)
	}
	return out
}

// TestSubscribePublish: messages published with Publish reach the
// subscription's handler once each, in seq order, after a Subscribed event.
func TestSubscribePublish(t *testing.T) {
	s := startServer(t, broadcast.Config{}, wsconn.Config{})
	r := newRecorder()
	c := dial(t, s.url(), &client.Options{OnEvent: r.event})
	require.NoError(t, c.Subscribe("news", r.handler))
	r.waitFor(t, "subscribed", func() bool { return r.countLocked(client.Subscribed, "news") == 1 })
	for i := range 20 {
		assert.Equal(t, uint64(i+1), publish(t, c, "news", i))
	}
	r.waitFor(t, "20 messages", func() bool { return len(r.msgs["news"]) == 20 })
	r.mu.Lock()
	defer r.mu.Unlock()
	assert.Equal(t, want(20), r.seqsLocked("news"))
	assert.JSONEq(t, `{"i":19}`, string(r.msgs["news"][19].Data))
	assert.ErrorIs(t, c.Subscribe("news", r.handler), client.ErrAlreadySubscribed)
	assert.Zero(t, r.countLocked(client.Lost, ""))
}

// TestReconnectRecovers: the network fails while messages are published;
// the client reconnects with since=topic:seq@epoch and delivers every
// message once, in order, with nothing lost.
func TestReconnectRecovers(t *testing.T) {
	s := startServer(t, broadcast.Config{}, wsconn.Config{})
	p := startProxy(t, s.addr)
	r := newRecorder()
	c := dial(t, p.url(), &client.Options{OnEvent: r.event, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	for _, topic := range []string{"a", "b"} {
		require.NoError(t, c.Subscribe(topic, r.handler))
	}
	r.waitFor(t, "subscribed", func() bool { return r.countLocked(client.Subscribed, "") == 2 })

	// Publishes go straight to the server: through the proxy, a publish
	// right after a cut could go out on the kept-alive connection the cut
	// has just closed, and fail, as a publish cut by the network may.
	pub, err := client.NewPublisher("http://"+s.addr, nil)
	require.NoError(t, err)
	const n = 300
	cuts := 0
	for i := range n {
		publish(t, pub, "a", i)
		if i%2 == 0 {
			publish(t, pub, "b", i)
		}
		if i%100 == 50 {
			// Each cut hits a connection of its own: the last one has
			// come back (publishes are quick now, and two cuts could
			// otherwise fall within one backoff).
			r.waitFor(t, "reconnected", func() bool { return r.countLocked(client.Connected, "") == cuts+1 })
			p.cut()
			cuts++
		}
	}
	r.waitFor(t, "every message", func() bool { return len(r.msgs["a"]) == n && len(r.msgs["b"]) == n/2 })
	r.mu.Lock()
	defer r.mu.Unlock()
	assert.Equal(t, want(n), r.seqsLocked("a"))
	assert.Equal(t, want(n/2), r.seqsLocked("b"))
	assert.Zero(t, r.countLocked(client.Lost, ""), "nothing lost: %v", r.events)
	assert.GreaterOrEqual(t, r.countLocked(client.Connected, ""), 4, "a connection per cut")
	for _, e := range r.events {
		if e.Kind == client.Subscribed && r.countLocked(client.Connected, "") > 1 && e.Seq > 0 {
			assert.True(t, e.Recovered, "a resubscribe after a cut recovers: %v", e)
		}
	}
}

// TestRestartReportsLoss: the server restarts, and its in-memory history
// with it. The client reconnects, and what it could not recover is a Lost
// event with the new epoch, never a silent gap; messages after the restart
// are delivered.
func TestRestartReportsLoss(t *testing.T) {
	s := startServer(t, broadcast.Config{}, wsconn.Config{})
	r := newRecorder()
	c := dial(t, s.url(), &client.Options{OnEvent: r.event, MinBackoff: 10 * time.Millisecond, MaxBackoff: 200 * time.Millisecond})
	require.NoError(t, c.Subscribe("t", r.handler))
	r.waitFor(t, "subscribed", func() bool { return r.countLocked(client.Subscribed, "t") == 1 })
	for i := range 5 {
		publish(t, c, "t", i)
	}
	r.waitFor(t, "5 messages", func() bool { return len(r.msgs["t"]) == 5 })
	var epoch string
	r.mu.Lock()
	for _, e := range r.events {
		if e.Kind == client.Subscribed {
			epoch = e.Epoch
		}
	}
	r.mu.Unlock()

	s.stop(t)
	s.start(t)
	// Published as the client comes back: some of seqs 1..3 of the new
	// epoch are published before it resubscribes, and it cannot recover
	// them from seq 5 of the old one.
	for i := range 3 {
		publish(t, c, "t", i)
	}
	r.waitFor(t, "resubscribed", func() bool { return r.countLocked(client.Subscribed, "t") == 2 })
	publish(t, c, "t", 99)
	r.waitFor(t, "the message after the restart", func() bool {
		m := r.msgs["t"]
		return len(m) > 5 && m[len(m)-1].Seq == 4
	})

	r.mu.Lock()
	defer r.mu.Unlock()
	var lost []client.Event
	for _, e := range r.events {
		if e.Kind == client.Lost {
			lost = append(lost, e)
		}
	}
	require.Len(t, lost, 1, "%v", r.events)
	assert.Equal(t, "new_epoch", lost[0].Reason)
	assert.Equal(t, epoch, lost[0].PrevEpoch)
	assert.Equal(t, uint64(5), lost[0].PrevSeq)
	assert.Equal(t, uint64(1), lost[0].From)
	assert.LessOrEqual(t, lost[0].To, uint64(3))
	assert.NotEqual(t, epoch, lost[0].Epoch, "a new epoch")
	// After 1..5 of the old epoch, the new epoch's messages from the one
	// after the loss: every seq delivered or reported.
	seqs := r.seqsLocked("t")
	expect := want(5)
	for q := lost[0].To + 1; q <= 4; q++ {
		expect = append(expect, q)
	}
	assert.Equal(t, expect, seqs)
	assert.Positive(t, r.countLocked(client.Disconnected, ""))
}

// TestSlowConsumerRecovers: a handler too slow for the server's queue gets
// the connection closed (4008); the client reconnects with since and the
// history holds what it missed: every message once, in order.
func TestSlowConsumerRecovers(t *testing.T) {
	// History long enough for all that the client misses.
	s := startServer(t, broadcast.Config{HistorySize: 2000}, wsconn.Config{MaxQueueBytes: 4 << 10})
	r := newRecorder()
	slow := make(chan struct{})
	handler := func(m client.Message) {
		if m.Seq == 1 {
			<-slow // the first message holds the read loop while the queue fills
		}
		r.handler(m)
	}
	// A small receive buffer, fixed before connect (no autotuning), so
	// that the server's send buffer and queue fill soon.
	dialer := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		var err error
		if cerr := rc.Control(func(fd uintptr) {
			err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
		}); cerr != nil {
			return cerr
		}
		return err
	}}
	c := dial(t, s.url(), &client.Options{
		OnEvent: r.event, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		HTTPClient: &http.Client{Transport: &http.Transport{DialContext: dialer.DialContext}},
	})
	require.NoError(t, c.Subscribe("fast", handler))
	r.waitFor(t, "subscribed", func() bool { return r.countLocked(client.Subscribed, "fast") == 1 })
	// 8 MB, more than the server's send buffer (at most 4 MB) holds.
	const n = 500
	big := strings.Repeat("x", 16<<10)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	for i := range n {
		_, err := c.Publish(ctx, "fast", fmt.Appendf(nil, `{"i":%d,"pad":%q}`, i, big))
		require.NoError(t, err)
	}
	// The socket buffers fill, then the queue: the server closes 4008,
	// which the client sees once its handler lets the read loop go on.
	require.Eventually(t, func() bool { return s.hub.Stats().SlowDisconnects > 0 }, waitTimeout, time.Millisecond)
	close(slow)
	r.waitFor(t, "every message", func() bool { return len(r.msgs["fast"]) == n })
	r.mu.Lock()
	defer r.mu.Unlock()
	assert.Equal(t, want(n), r.seqsLocked("fast"))
	assert.Zero(t, r.countLocked(client.Lost, ""), "%v", r.events)
	// The close is 4008, or a reset if the server gave up on its close
	// handshake first: either way a Disconnected event.
	assert.Positive(t, r.countLocked(client.Disconnected, ""), "%v", r.events)
}

// TestTokenRefresh: the server closes a connection with 4001 when its
// token expires; the client asks Options.Token for a new one, reconnects
// and recovers. Without Options.Token, a 4001 ends the client with
// ErrTokenExpired.
func TestTokenRefresh(t *testing.T) {
	secret := []byte(strings.Repeat("s", 32))
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	require.NoError(t, err)
	s := startServer(t, broadcast.Config{Auth: v}, wsconn.Config{})
	mint := func(ttl time.Duration) string {
		tok, err := auth.SignHS256(secret, auth.Claims{
			RegisteredClaims: jwt.RegisteredClaims{Subject: "ann", ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))},
			Subscribe:        jwt.ClaimStrings{"feed"},
			Publish:          jwt.ClaimStrings{"feed"},
		})
		require.NoError(t, err)
		return tok
	}

	t.Run("refreshed", func(t *testing.T) {
		r := newRecorder()
		c := dial(t, s.url(), &client.Options{
			OnEvent:    r.event,
			MinBackoff: 10 * time.Millisecond,
			Token: func(context.Context) (string, error) {
				return mint(1500 * time.Millisecond), nil // fresh each time
			},
		})
		require.NoError(t, c.Subscribe("feed", r.handler))
		r.waitFor(t, "subscribed", func() bool { return r.countLocked(client.Subscribed, "feed") == 1 })
		i := 0
		r.waitFor(t, "a 4001 close and a reconnect", func() bool {
			r.mu.Unlock()
			publish(t, c, "feed", i)
			i++
			time.Sleep(20 * time.Millisecond)
			r.mu.Lock()
			for _, e := range r.events {
				if e.Kind == client.Disconnected && e.Code == 4001 {
					return r.countLocked(client.Subscribed, "feed") >= 2
				}
			}
			return false
		})
		publish(t, c, "feed", i)
		i++
		r.waitFor(t, "every message", func() bool { return len(r.msgs["feed"]) == i })
		r.mu.Lock()
		defer r.mu.Unlock()
		assert.Equal(t, want(i), r.seqsLocked("feed"))
		assert.Zero(t, r.countLocked(client.Lost, ""), "%v", r.events)
	})

	t.Run("no hook", func(t *testing.T) {
		r := newRecorder()
		u := s.url() + "/ws?token=" + mint(1200*time.Millisecond)
		c := dial(t, u, &client.Options{OnEvent: r.event})
		select {
		case <-c.Done():
		case <-time.After(waitTimeout):
			t.Fatal("the client did not end at its token's expiry")
		}
		assert.ErrorIs(t, c.Err(), client.ErrTokenExpired)
	})

	t.Run("refused", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		_, err := client.Dial(ctx, s.url(), nil)
		var he *client.HandshakeError
		require.True(t, errors.As(err, &he), "%v", err)
		assert.Equal(t, 401, he.Status)
	})
}

// TestIdleCloseRecovers: a handler that holds the read loop past the
// server's idle timeout leaves its pings unanswered; the server closes the
// connection (1001), and the client reconnects with since and delivers
// every message once, in order.
func TestIdleCloseRecovers(t *testing.T) {
	s := startServer(t, broadcast.Config{}, wsconn.Config{PingInterval: 100 * time.Millisecond, IdleTimeout: 400 * time.Millisecond})
	r := newRecorder()
	hold := make(chan struct{})
	handler := func(m client.Message) {
		if m.Seq == 2 {
			<-hold
		}
		r.handler(m)
	}
	c := dial(t, s.url(), &client.Options{OnEvent: r.event, MinBackoff: 10 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	require.NoError(t, c.Subscribe("quiet", handler))
	r.waitFor(t, "subscribed", func() bool { return r.countLocked(client.Subscribed, "quiet") == 1 })
	for i := range 5 {
		publish(t, c, "quiet", i)
	}
	require.Eventually(t, func() bool { return s.srv.Stats().IdleCloses > 0 }, waitTimeout, 5*time.Millisecond)
	close(hold)
	for i := 5; i < 10; i++ {
		publish(t, c, "quiet", i)
	}
	r.waitFor(t, "every message", func() bool { return len(r.msgs["quiet"]) == 10 })
	r.mu.Lock()
	defer r.mu.Unlock()
	assert.Equal(t, want(10), r.seqsLocked("quiet"))
	assert.Zero(t, r.countLocked(client.Lost, ""), "%v", r.events)
	assert.GreaterOrEqual(t, r.countLocked(client.Connected, ""), 2, "%v", r.events)
}

// TestExpiredTokenNotReused: after a 4001 the client does not reconnect
// with the token that expired: it asks Options.Token again (with backoff)
// until it gets another.
func TestExpiredTokenNotReused(t *testing.T) {
	secret := []byte(strings.Repeat("e", 32))
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	require.NoError(t, err)
	s := startServer(t, broadcast.Config{Auth: v}, wsconn.Config{})
	mint := func(ttl time.Duration) string {
		tok, err := auth.SignHS256(secret, auth.Claims{
			RegisteredClaims: jwt.RegisteredClaims{Subject: "bob", ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))},
			Subscribe:        jwt.ClaimStrings{"x"},
		})
		require.NoError(t, err)
		return tok
	}
	first := mint(1200 * time.Millisecond)
	var asked atomic.Int32
	var fresh atomic.Pointer[string]
	r := newRecorder()
	c := dial(t, s.url(), &client.Options{
		OnEvent: r.event, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Token: func(context.Context) (string, error) {
			asked.Add(1)
			if f := fresh.Load(); f != nil {
				return *f, nil
			}
			return first, nil // the same, even after it expired
		},
	})
	require.NoError(t, c.Subscribe("x", r.handler))
	r.waitFor(t, "a 4001 close", func() bool {
		for _, e := range r.events {
			if e.Kind == client.Disconnected && e.Code == 4001 {
				return true
			}
		}
		return false
	})
	before, refused := asked.Load(), s.hub.Stats().AuthFailures
	time.Sleep(300 * time.Millisecond)
	assert.Greater(t, asked.Load(), before, "Token is asked again")
	assert.Equal(t, refused, s.hub.Stats().AuthFailures, "no handshake with the expired token")
	r.mu.Lock()
	assert.Equal(t, 1, r.countLocked(client.Connected, ""), "no connection with the expired token")
	r.mu.Unlock()
	tok := mint(time.Hour)
	fresh.Store(&tok)
	r.waitFor(t, "a connection with the new token", func() bool { return r.countLocked(client.Connected, "") == 2 })
}

// TestPublishBatch: a batch is published in order with one request, each
// item answered with its seq or its own error.
func TestPublishBatch(t *testing.T) {
	s := startServer(t, broadcast.Config{}, wsconn.Config{})
	p, err := client.NewPublisher("http://"+s.addr, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	res, err := p.PublishBatch(ctx, []client.Item{
		{Topic: "a", Data: []byte(`1`)},
		{Topic: "bad topic", Data: []byte(`2`)},
		{Topic: "a", Data: []byte(`{"x":3}`)},
	})
	require.NoError(t, err)
	require.Len(t, res, 3)
	assert.Equal(t, uint64(1), res[0].Seq)
	var ie *client.ItemError
	require.ErrorAs(t, res[1].Err, &ie)
	assert.Equal(t, "invalid_topic", ie.Code)
	assert.Equal(t, uint64(2), res[2].Seq)
	assert.NoError(t, res[2].Err)
}

// TestPublishBatchExact: a batch sends each item's data as it is (it was
// compacted and HTML-escaped), a publish URL's own ?topic= does not turn a
// batch into one publish, and Publish to "" is a single publish that the
// server refuses (it was sent as a batch, and reported a failure for what
// it published).
func TestPublishBatchExact(t *testing.T) {
	s := startServer(t, broadcast.Config{}, wsconn.Config{})
	r := newRecorder()
	c := dial(t, s.url(), &client.Options{OnEvent: r.event})
	require.NoError(t, c.Subscribe("x", r.handler))
	r.waitFor(t, "subscribed", func() bool { return r.countLocked(client.Subscribed, "x") == 1 })
	p, err := client.NewPublisher("http://"+s.addr+"/publish?topic=fixed", nil)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	data := `{"a": "<b>&"}`
	res, err := p.PublishBatch(ctx, []client.Item{{Topic: "x", Data: []byte(data)}, {Topic: "x"}})
	require.NoError(t, err)
	require.Len(t, res, 2)
	assert.Equal(t, uint64(1), res[0].Seq)
	var ie *client.ItemError
	require.ErrorAs(t, res[1].Err, &ie)
	assert.Equal(t, "invalid_data", ie.Code)
	r.waitFor(t, "the message", func() bool { return len(r.msgs["x"]) == 1 })
	r.mu.Lock()
	assert.Equal(t, data, string(r.msgs["x"][0].Data), "the bytes as published")
	r.mu.Unlock()

	_, err = p.Publish(ctx, "", []byte(`{"topic":"other","data":1}`))
	var pe *client.PublishError
	require.ErrorAs(t, err, &pe)
	assert.Equal(t, 400, pe.Status)
	_, total := s.hub.TopTopics(0)
	assert.Equal(t, 1, total, "nothing published on other topics")
}
