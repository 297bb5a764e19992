package client_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/client"
	"github.com/fanout/fanout/wsconn"
)

// TestRateLimitedSubscribeRetried: a subscribe refused for the client's
// message rate (an error with neither id nor topic, for the server reads
// no more of it) is sent again, and the subscription works; it used to
// wait for its reply forever, dropping every message.
func TestRateLimitedSubscribeRetried(t *testing.T) {
	s := startServer(t, broadcast.Config{MessageRate: 1, MessageBurst: 2}, wsconn.Config{})
	r := newRecorder()
	c := dial(t, s.url(), &client.Options{OnEvent: r.event})
	for _, topic := range []string{"a", "b", "c"} {
		require.NoError(t, c.Subscribe(topic, r.handler))
	}
	r.waitFor(t, "the three subscribed", func() bool { return r.countLocked(client.Subscribed, "") == 3 })
	publish(t, c, "c", 1)
	r.waitFor(t, "c's message", func() bool { return len(r.msgs["c"]) == 1 })
}

// hookTransport runs hook once, during the next handshake.
type hookTransport struct {
	hook atomic.Pointer[func()]
}

func (h *hookTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if f := h.hook.Swap(nil); f != nil {
		(*f)()
	}
	return http.DefaultTransport.RoundTrip(req)
}

// TestResubscribeDuringReconnect: a topic unsubscribed and subscribed again
// while the client reconnects is subscribed on the new connection; the new
// subscription used to be skipped, silently.
func TestResubscribeDuringReconnect(t *testing.T) {
	s := startServer(t, broadcast.Config{}, wsconn.Config{})
	p := startProxy(t, s.addr)
	ht := &hookTransport{}
	r, r2 := newRecorder(), newRecorder()
	c := dial(t, p.url(), &client.Options{OnEvent: r.event, MinBackoff: 10 * time.Millisecond, HTTPClient: &http.Client{Transport: ht}})
	require.NoError(t, c.Subscribe("a", r.handler))
	r.waitFor(t, "subscribed", func() bool { return r.countLocked(client.Subscribed, "a") == 1 })
	hook := func() {
		assert.NoError(t, c.Unsubscribe("a"))
		assert.NoError(t, c.Subscribe("a", r2.handler))
	}
	ht.hook.Store(&hook)
	p.cut()
	r.waitFor(t, "reconnected", func() bool { return r.countLocked(client.Connected, "") == 2 })
	r.waitFor(t, "subscribed again", func() bool { return r.countLocked(client.Subscribed, "a") == 2 })
	for i := range 3 {
		publish(t, c, "a", i)
	}
	r2.waitFor(t, "the new subscription's messages", func() bool { return len(r2.msgs["a"]) == 3 })
	r.mu.Lock()
	defer r.mu.Unlock()
	assert.Empty(t, r.msgs["a"], "the old handler gets nothing after Unsubscribe")
}

// TestQueryRefusedFallsBack: a topic the server refuses in the query (here
// longer than --max-topic-bytes) no longer ends the client with a 400: it
// subscribes by message, that topic is refused alone, and the others go on.
// A topic name with characters no topic may have is refused by Subscribe.
func TestQueryRefusedFallsBack(t *testing.T) {
	s := startServer(t, broadcast.Config{MaxTopicBytes: 8}, wsconn.Config{})
	p := startProxy(t, s.addr)
	r := newRecorder()
	c := dial(t, p.url(), &client.Options{OnEvent: r.event, MinBackoff: 10 * time.Millisecond})
	assert.Error(t, c.Subscribe("bad topic", r.handler))
	p.cut() // the next handshake lists both topics
	require.NoError(t, c.Subscribe("ok", r.handler))
	require.NoError(t, c.Subscribe("much-too-long", r.handler))
	r.waitFor(t, "ok subscribed", func() bool { return r.countLocked(client.Subscribed, "ok") >= 1 })
	r.waitFor(t, "the long one refused", func() bool { return r.countLocked(client.Refused, "much-too-long") >= 1 })
	p.cut()
	r.waitFor(t, "ok subscribed again", func() bool { return r.countLocked(client.Subscribed, "ok") >= 2 })
	publish(t, c, "ok", 1)
	r.waitFor(t, "ok's message", func() bool { return len(r.msgs["ok"]) == 1 })
	select {
	case <-c.Done():
		t.Fatalf("the client ended: %v", c.Err())
	default:
	}
}

// TestUserTopicWithoutEpoch: the user's own topic, which the token
// subscribes already, can be subscribed: the already_subscribed answer
// makes the client subscribe afresh, so that a Subscribed event says where
// messages start (messages that came before it were dropped with no seq to
// tell where, and seq 1 went missing in CI), and a reconnect recovers it.
func TestUserTopicWithoutEpoch(t *testing.T) {
	secret := []byte(strings.Repeat("u", 32))
	v, err := auth.NewVerifier(auth.Config{Secret: secret})
	require.NoError(t, err)
	s := startServer(t, broadcast.Config{Auth: v}, wsconn.Config{})
	p := startProxy(t, s.addr)
	tok, err := auth.SignHS256(secret, auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "alice", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		Publish:          jwt.ClaimStrings{"user:*"},
	})
	require.NoError(t, err)
	r := newRecorder()
	c := dial(t, p.url(), &client.Options{OnEvent: r.event, MinBackoff: 10 * time.Millisecond,
		Token: func(context.Context) (string, error) { return tok, nil }})
	require.NoError(t, c.Subscribe("user:alice", r.handler))
	r.waitFor(t, "subscribed", func() bool { return r.countLocked(client.Subscribed, "user:alice") == 1 })
	publish(t, c, "user:alice", 1)
	r.waitFor(t, "the first message", func() bool { return len(r.msgs["user:alice"]) == 1 })
	p.cut()
	r.waitFor(t, "resubscribed", func() bool { return r.countLocked(client.Subscribed, "user:alice") >= 2 })
	publish(t, c, "user:alice", 2)
	r.waitFor(t, "the second message", func() bool { return len(r.msgs["user:alice"]) == 2 })
	r.mu.Lock()
	defer r.mu.Unlock()
	assert.Equal(t, []uint64{1, 2}, r.seqsLocked("user:alice"))
}

// TestBackoffAfterQuickClose: a server that accepts and closes at once is
// retried with growing waits; the client used to reconnect in a hot loop,
// hundreds of times a second.
func TestBackoffAfterQuickClose(t *testing.T) {
	var accepts atomic.Int32
	var wg sync.WaitGroup
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		accepts.Add(1)
		wg.Add(1)
		defer wg.Done()
		_ = conn.Close(4008, "slow consumer")
	}))
	defer hs.Close()
	c := dial(t, "ws"+strings.TrimPrefix(hs.URL, "http"), &client.Options{MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second})
	time.Sleep(time.Second)
	require.NoError(t, c.Close())
	// Waits drawn from [0, 50 ms), [0, 100), [0, 200), ... [0, 1 s): a
	// handful in a second, never hundreds.
	assert.Less(t, accepts.Load(), int32(25), "connections in 1 s")
	wg.Wait()
}
