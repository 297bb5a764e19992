package broadcast_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/golang-jwt/jwt/v5"
	gorilla "github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// authSecret signs the tokens of the hubs that startAuthHub starts.
var authSecret = []byte("broadcast-auth-test-secret-32-bytes+")

// authToken signs a token for sub with the topic patterns it may subscribe
// to and publish on, expiring at exp.
func authToken(t testing.TB, sub string, subscribe, publish []string, exp time.Time) string {
	t.Helper()
	return signClaims(t, authSecret, auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: sub, ExpiresAt: jwt.NewNumericDate(exp)},
		Subscribe:        subscribe,
		Publish:          publish,
	})
}

func signClaims(t testing.TB, secret []byte, c jwt.Claims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, c).SignedString(secret)
	require.NoError(t, err)
	return s
}

// inAnHour is the expiry of tokens that outlive their test.
func inAnHour() time.Time { return time.Now().Add(time.Hour) }

// startAuthHub is startHub with a hub that verifies tokens of authSecret.
func startAuthHub(t testing.TB, hcfg broadcast.Config) *testServer {
	t.Helper()
	v, err := auth.NewVerifier(auth.Config{Secret: authSecret})
	require.NoError(t, err)
	hcfg.Auth = v
	return startHub(t, hcfg, wsconn.Config{})
}

// authDial connects a client of kind to /ws?query, with token in an
// Authorization: Bearer header unless it is "". On a rejected handshake it
// returns the HTTP response with the error.
func authDial(kind, addr, query, token string) (wsClient, *http.Response, error) {
	u := "ws://" + addr + "/ws"
	if query != "" {
		u += "?" + query
	}
	header := http.Header{}
	if token != "" {
		header.Set("Authorization", "Bearer "+token)
	}
	switch kind {
	case "gorilla":
		c, resp, err := (&gorilla.Dialer{HandshakeTimeout: waitTimeout}).Dial(u, header)
		if err != nil {
			return nil, resp, err
		}
		return &gorillaClient{c}, resp, nil
	case "coder":
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		c, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: header})
		if err != nil {
			return nil, resp, err
		}
		return &coderClient{c}, resp, nil
	}
	panic("unknown client kind " + kind)
}

func mustAuthDial(t testing.TB, kind, addr, query, token string) wsClient {
	t.Helper()
	c, _, err := authDial(kind, addr, query, token)
	require.NoError(t, err, "%s: dial /ws?%s", kind, query)
	t.Cleanup(c.Close)
	return c
}

// rawHandshake sends an upgrade request for target with the extra header
// fields on a connection of its own, and returns the response with its
// body read (a 101 has none). The connection is closed when the test ends.
func rawHandshake(t testing.TB, addr, target string, header http.Header) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, waitTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { _ = conn.Close() })
	require.NoError(t, conn.SetDeadline(time.Now().Add(waitTimeout)))
	var req bytes.Buffer
	req.WriteString("GET " + target + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
	require.NoError(t, header.Write(&req))
	req.WriteString("\r\n")
	_, err = conn.Write(req.Bytes())
	require.NoError(t, err)
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodGet})
	require.NoError(t, err)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return resp, nil
	}
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, body
}

// postAuth sends POST /publish?topic=topic with body and, unless it is "",
// the Authorization header; it returns the response with its body read.
func (ts *testServer) postAuth(t testing.TB, topic, authorization string, body []byte) (*http.Response, []byte) {
	t.Helper()
	return ts.postTo(t, "/publish?topic="+topic, authorization, body)
}

// postTo sends POST target (a path and query) with body and, unless it is
// "", the Authorization header; it returns the response with its body read.
func (ts *testServer) postTo(t testing.TB, target, authorization string, body []byte) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+ts.addr+target, bytes.NewReader(body))
	require.NoError(t, err)
	if authorization != "" {
		req.Header.Set("Authorization", authorization)
	}
	resp, err := httpClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

// Challenges of the WWW-Authenticate header of a 401 handshake (RFC 6750).
const (
	challengeMissing = `Bearer realm="fanout"`
	challengeInvalid = `Bearer realm="fanout", error="invalid_token"`
)

// TestAuthHandshake: the token and the ?topics= of an upgrade are checked
// before it is accepted: 401 with a WWW-Authenticate challenge without a
// valid token, 403 for a topic the token does not grant. The response
// never echoes the token; the hub counts both kinds of refusal.
func TestAuthHandshake(t *testing.T) {
	ts := startAuthHub(t, broadcast.Config{MaxTopicBytes: 32})
	good := authToken(t, "alice", []string{"chat.*"}, nil, inAnHour())
	all := authToken(t, "bob", []string{"*"}, nil, inAnHour())
	expired := authToken(t, "alice", []string{"chat.*"}, nil, time.Now().Add(-time.Minute))
	forged := signClaims(t, []byte("another secret"), jwt.RegisteredClaims{Subject: "alice", ExpiresAt: jwt.NewNumericDate(inAnHour())})
	badSub := authToken(t, "a:b", nil, nil, inAnHour())
	// user:<30 bytes> is longer than the hub's MaxTopicBytes.
	longSub := authToken(t, strings.Repeat("x", 30), nil, nil, inAnHour())

	// Accepted first: an upgrader from the server's pool must not keep this
	// request's Authorization for the next, tokenless, request.
	resp, _ := rawHandshake(t, ts.addr, "/ws", http.Header{"Authorization": {"Bearer " + good}})
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)

	var unauthorized, forbidden uint64
	for _, tc := range []struct {
		name, target, authorization string
		status                      int
		challenge                   string // WWW-Authenticate; "" for none
	}{
		{"no token", "/ws", "", http.StatusUnauthorized, challengeMissing},
		{"not a Bearer header", "/ws", "Basic YWxpY2U6cHc=", http.StatusUnauthorized, challengeMissing},
		{"malformed token", "/ws", "Bearer not-a-token", http.StatusUnauthorized, challengeInvalid},
		{"other secret", "/ws", "Bearer " + forged, http.StatusUnauthorized, challengeInvalid},
		{"expired", "/ws", "Bearer " + expired, http.StatusUnauthorized, challengeInvalid},
		{"expired in the query", "/ws?token=" + expired, "", http.StatusUnauthorized, challengeInvalid},
		{"the header wins over the query", "/ws?token=" + good, "Bearer " + expired, http.StatusUnauthorized, challengeInvalid},
		{"sub with a colon", "/ws", "Bearer " + badSub, http.StatusUnauthorized, challengeInvalid},
		{"sub too long for its user topic", "/ws", "Bearer " + longSub, http.StatusUnauthorized, challengeInvalid},
		{"topic not granted", "/ws?topics=chat.a,secret", "Bearer " + good, http.StatusForbidden, ""},
		{"topic not granted, token in the query", "/ws?topics=secret&token=" + good, "", http.StatusForbidden, ""},
		{"another user's topic", "/ws?topics=user:alice", "Bearer " + all, http.StatusForbidden, ""},
		{"token in the header", "/ws?topics=chat.a,user:alice", "Bearer " + good, http.StatusSwitchingProtocols, ""},
		{"token in the query", "/ws?token=" + good + "&topics=chat.a", "", http.StatusSwitchingProtocols, ""},
		{"lower-case bearer", "/ws", "bearer " + good, http.StatusSwitchingProtocols, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			header := http.Header{}
			if tc.authorization != "" {
				header.Set("Authorization", tc.authorization)
			}
			resp, body := rawHandshake(t, ts.addr, tc.target, header)
			require.Equal(t, tc.status, resp.StatusCode, "%s: %s", resp.Status, body)
			assert.Equal(t, strconv.Itoa(tc.status)+" "+http.StatusText(tc.status), resp.Status, "status line")
			assert.Equal(t, tc.challenge, resp.Header.Get("WWW-Authenticate"))
			for _, tok := range []string{good, all, expired, forged} {
				assert.NotContains(t, string(body), tok, "the response echoes a token")
			}
		})
		switch tc.status {
		case http.StatusUnauthorized:
			unauthorized++
		case http.StatusForbidden:
			forbidden++
		}
	}
	st := ts.hub.Stats()
	assert.Equal(t, unauthorized, st.AuthFailures, "AuthFailures")
	assert.Equal(t, forbidden, st.Forbidden, "Forbidden")
}

// TestAuthTokenTransports: both libraries connect with the token in the
// header and in ?token=; the topics of the URL and the user's own topic are
// subscribed, in that order, and deliver.
func TestAuthTokenTransports(t *testing.T) {
	ts := startAuthHub(t, broadcast.Config{})
	tok := authToken(t, "alice", []string{"chat.*"}, nil, inAnHour())
	for _, kind := range clientKinds {
		for _, inQuery := range []bool{false, true} {
			topic := "chat." + kind
			query, header := "topics="+topic, tok
			if inQuery {
				topic += "-q"
				query, header = "topics="+topic+"&token="+tok, ""
			}
			t.Run(topic, func(t *testing.T) {
				c := mustAuthDial(t, kind, ts.addr, query, header)
				mustReadSubscribed(t, c, topic)
				mustReadSubscribed(t, c, "user:alice")
				mustReadMessage(t, c, topic, ts.publish(t, topic, `"to the topic"`))
				mustReadMessage(t, c, "user:alice", ts.publish(t, "user:alice", `"to alice"`))
			})
		}
	}
	assert.Zero(t, ts.hub.Stats().AuthFailures)
}

// TestAuthForbiddenMessages: subscribe and publish messages are checked
// against the token's patterns; a refused one gets error forbidden and the
// connection stays open for the next. A name that is no topic is
// invalid_topic, whatever the token says.
func TestAuthForbiddenMessages(t *testing.T) {
	steps := []struct {
		send, reply, code, topic string // reply: the type of the answer; code: of an error
	}{
		{send: subscribeMsg("secret"), reply: "error", code: broadcast.CodeForbidden},
		{send: subscribeMsg("user:bob"), reply: "error", code: broadcast.CodeForbidden},
		{send: subscribeMsg("chat.a"), reply: "subscribed", topic: "chat.a"},
		{send: publishMsg("chat.a", `1`), reply: "error", code: broadcast.CodeForbidden},
		{send: publishMsg("user:alice", `1`), reply: "error", code: broadcast.CodeForbidden},
		{send: publishMsg("chat.room", `"hi"`), reply: "published", topic: "chat.room"},
		{send: subscribeMsg("bad topic"), reply: "error", code: broadcast.CodeInvalidTopic},
		{send: publishMsg("bad topic", `1`), reply: "error", code: broadcast.CodeInvalidTopic},
		{send: subscribeMsg("chat.b"), reply: "subscribed", topic: "chat.b"},
	}
	var wantForbidden uint64
	for _, s := range steps {
		if s.code == broadcast.CodeForbidden {
			wantForbidden++
		}
	}
	for _, kind := range clientKinds {
		t.Run(kind, func(t *testing.T) {
			ts := startAuthHub(t, broadcast.Config{})
			c := mustAuthDial(t, kind, ts.addr, "", authToken(t, "alice", []string{"chat.*"}, []string{"chat.room"}, inAnHour()))
			mustReadSubscribed(t, c, "user:alice")
			for _, s := range steps {
				mustWrite(t, c, s.send)
				if s.reply == "error" {
					mustReadError(t, c, s.code)
					continue
				}
				f := mustRead(t, c)
				require.Equal(t, s.reply, f.Type, "after %s: %s", s.send, f)
				require.Equal(t, s.topic, f.Topic, "after %s: %s", s.send, f)
			}
			assert.Equal(t, wantForbidden, ts.hub.Stats().Forbidden)
		})
	}
}

// TestAuthUserTopic: every connection of a user hears user:<sub>, and no
// other user does, not even with "*" patterns.
func TestAuthUserTopic(t *testing.T) {
	ts := startAuthHub(t, broadcast.Config{})
	aliceTok := authToken(t, "alice", nil, nil, inAnHour())
	alice1 := mustAuthDial(t, "gorilla", ts.addr, "", aliceTok)
	mustReadSubscribed(t, alice1, "user:alice")
	// Naming the own topic in the URL subscribes it once.
	alice2 := mustAuthDial(t, "coder", ts.addr, "topics=user:alice", aliceTok)
	mustReadSubscribed(t, alice2, "user:alice")
	bob := mustAuthDial(t, "gorilla", ts.addr, "", authToken(t, "bob", []string{"*"}, []string{"*"}, inAnHour()))
	mustReadSubscribed(t, bob, "user:bob")

	mustWrite(t, bob, subscribeMsg("user:alice"))
	mustReadError(t, bob, broadcast.CodeForbidden)
	mustWrite(t, bob, publishMsg("user:alice", `"spoof"`))
	mustReadError(t, bob, broadcast.CodeForbidden)
	mustWrite(t, bob, subscribeMsg("anything"))
	mustReadSubscribed(t, bob, "anything")

	seq := ts.publish(t, "user:alice", `{"for":"alice"}`)
	for _, c := range []wsClient{alice1, alice2} {
		f := mustReadMessage(t, c, "user:alice", seq)
		assert.JSONEq(t, `{"for":"alice"}`, string(f.Data))
	}
	// Published after alice's message: had bob's shard queued alice's
	// message to him, it would come first.
	mustReadMessage(t, bob, "user:bob", ts.publish(t, "user:bob", `{"for":"bob"}`))
	// And alice does not hear bob's.
	seq = ts.publish(t, "user:alice", `2`)
	mustReadMessage(t, alice1, "user:alice", seq)
	mustReadMessage(t, alice2, "user:alice", seq)
}

// TestAuthTokenExpired: a token's grants end at its exp. A subscribe or
// publish after it gets token_expired, and the sweep closes the connection
// with 4001 soon after, subscriptions and all.
func TestAuthTokenExpired(t *testing.T) {
	ts := startAuthHub(t, broadcast.Config{})
	exp := jwt.NewNumericDate(time.Now().Add(3 * time.Second)) // whole seconds: 2 to 3 s ahead
	c := mustAuthDial(t, "gorilla", ts.addr, "", authToken(t, "alice", []string{"*"}, []string{"*"}, exp.Time))
	mustReadSubscribed(t, c, "user:alice")
	mustWrite(t, c, subscribeMsg("chat"))
	mustReadSubscribed(t, c, "chat")

	time.Sleep(time.Until(exp.Time))
	// Until the sweep's next pass, messages are refused; then it closes.
	var err error
	for range 1000 {
		if err = c.WriteText([]byte(publishMsg("chat", `1`))); err != nil {
			break
		}
		var f frame
		if f, err = readFrame(c); err != nil {
			break
		}
		require.Equal(t, "error", f.Type, "%s", f)
		require.Equal(t, broadcast.CodeTokenExpired, f.Code, "%s", f)
	}
	for err == nil { // the write went out before the close frame came
		_, err = readFrame(c)
	}
	assert.Equal(t, int(broadcast.CloseTokenExpired), closeCode(err), "%v", err)
	st := ts.hub.Stats()
	assert.Equal(t, uint64(1), st.ExpiryCloses, "ExpiryCloses")
	assert.Zero(t, st.Forbidden, "an expired token is not forbidden")
	assert.Zero(t, st.MessagesIn, "nothing published after exp")
}

// TestAuthPublishHTTP: POST /publish takes the publish key or a token that
// grants the topic, from the Authorization header only.
func TestAuthPublishHTTP(t *testing.T) {
	const key = "publish-key-0123"
	withAuth := startAuthHub(t, broadcast.Config{PublishKey: key})
	keyOnly := startHub(t, broadcast.Config{PublishKey: key}, wsconn.Config{})
	publisher := authToken(t, "svc", nil, []string{"chat.*"}, inAnHour())
	reader := authToken(t, "alice", []string{"*"}, nil, inAnHour())
	expired := authToken(t, "svc", nil, []string{"chat.*"}, time.Now().Add(-time.Minute))

	for _, tc := range []struct {
		name          string
		ts            *testServer
		topic, header string
		status        int
	}{
		{"no credential", withAuth, "chat.a", "", http.StatusUnauthorized},
		{"publish key", withAuth, "chat.a", "Bearer " + key, http.StatusAccepted},
		{"publish key, any topic", withAuth, "news", "bearer " + key, http.StatusAccepted},
		{"wrong key", withAuth, "chat.a", "Bearer wrong-key", http.StatusUnauthorized},
		{"token granting the topic", withAuth, "chat.a", "Bearer " + publisher, http.StatusAccepted},
		{"token not granting the topic", withAuth, "news", "Bearer " + publisher, http.StatusForbidden},
		{"token without publish rights", withAuth, "chat.a", "Bearer " + reader, http.StatusForbidden},
		{"expired token", withAuth, "chat.a", "Bearer " + expired, http.StatusUnauthorized},
		{"token in the query only", withAuth, "chat.a&token=" + publisher, "", http.StatusUnauthorized},
		{"key only: no credential", keyOnly, "chat.a", "", http.StatusUnauthorized},
		{"key only: wrong key", keyOnly, "chat.a", "Bearer wrong-key", http.StatusUnauthorized},
		{"key only: a token is no key", keyOnly, "chat.a", "Bearer " + publisher, http.StatusUnauthorized},
		{"key only: publish key", keyOnly, "chat.a", "Bearer " + key, http.StatusAccepted},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp, body := tc.ts.postAuth(t, tc.topic, tc.header, []byte(`{"n":1}`))
			require.Equal(t, tc.status, resp.StatusCode, "%s", body)
			if tc.status == http.StatusUnauthorized {
				want := challengeInvalid
				if tc.header == "" {
					want = challengeMissing
				}
				assert.Equal(t, want, resp.Header.Get("WWW-Authenticate"))
			}
		})
	}
	st := withAuth.hub.Stats()
	assert.Equal(t, uint64(4), st.AuthFailures, "AuthFailures")
	assert.Equal(t, uint64(2), st.Forbidden, "Forbidden")
	assert.Equal(t, uint64(3), st.MessagesIn, "MessagesIn")
	assert.Equal(t, uint64(3), keyOnly.hub.Stats().AuthFailures, "AuthFailures without Auth")
}

// TestAuthRateLimit: a client gets MessageBurst messages at once; the next
// is refused with error rate_limited, and a client that keeps on until its
// debt is a whole burst is closed with 1008. The rate is slow, so the refill
// during the test cannot matter: the bucket needs a second per message.
func TestAuthRateLimit(t *testing.T) {
	const burst = 5
	for _, kind := range clientKinds {
		t.Run(kind, func(t *testing.T) {
			ts := startAuthHub(t, broadcast.Config{MessageRate: 1, MessageBurst: burst})
			c := mustAuthDial(t, kind, ts.addr, "", authToken(t, "alice", nil, []string{"chat"}, inAnHour()))
			mustReadSubscribed(t, c, "user:alice")
			for i := range burst + 1 {
				mustWrite(t, c, publishMsg("chat", jsonData(i, 0)))
			}
			for range burst {
				f := mustRead(t, c)
				require.Equal(t, "published", f.Type, "%s", f)
			}
			mustReadError(t, c, broadcast.CodeRateLimited)
			limited := uint64(1)

			for i := 0; ; i++ {
				require.Less(t, i, 10*burst, "no close after %d messages over the rate", i)
				mustWrite(t, c, publishMsg("chat", jsonData(i, 0)))
				f, err := readFrame(c)
				if err != nil {
					require.Equal(t, int(broadcast.CloseRateLimit), closeCode(err), "%v", err)
					break
				}
				require.Equal(t, "error", f.Type, "%s", f)
				require.Equal(t, broadcast.CodeRateLimited, f.Code, "%s", f)
				limited++
			}
			st := ts.hub.Stats()
			assert.Equal(t, limited, st.RateLimited, "RateLimited")
			assert.Equal(t, uint64(1), st.RateCloses, "RateCloses")
			assert.Equal(t, uint64(burst), st.MessagesIn, "MessagesIn")
		})
	}
}

// TestAuthTooLarge: publish data over MaxDataBytes is refused, over the
// WebSocket with error too_large and over HTTP with 413; data of exactly
// the limit passes. Authorization is checked first.
func TestAuthTooLarge(t *testing.T) {
	const limit, key = 64, "publish-key-0123"
	ts := startAuthHub(t, broadcast.Config{MaxDataBytes: limit, PublishKey: key})
	c := mustAuthDial(t, "gorilla", ts.addr, "", authToken(t, "alice", nil, []string{"chat"}, inAnHour()))
	mustReadSubscribed(t, c, "user:alice")
	reader := authToken(t, "bob", []string{"*"}, nil, inAnHour())

	for _, tc := range []struct {
		name, topic string
		size        int
		want        string // over the WebSocket: the reply's type or error code
		cred        string // over HTTP
		status      int
	}{
		{"at the limit", "chat", limit, "published", "Bearer " + key, http.StatusAccepted},
		{"over the limit", "chat", limit + 1, broadcast.CodeTooLarge, "Bearer " + key, http.StatusRequestEntityTooLarge},
		{"far over the limit", "chat", 10 * limit, broadcast.CodeTooLarge, "Bearer " + key, http.StatusRequestEntityTooLarge},
		{"over the limit and not granted", "news", limit + 1, broadcast.CodeForbidden, "Bearer " + reader, http.StatusForbidden},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := jsonData(tc.size, tc.size)
			require.Len(t, data, tc.size)
			mustWrite(t, c, publishMsg(tc.topic, data))
			f := mustRead(t, c)
			if f.Type == "error" {
				assert.Equal(t, tc.want, f.Code, "%s", f)
			} else {
				assert.Equal(t, tc.want, f.Type, "%s", f)
			}
			resp, body := ts.postAuth(t, tc.topic, tc.cred, []byte(data))
			assert.Equal(t, tc.status, resp.StatusCode, "%s", body)
		})
	}
	assert.Equal(t, uint64(2), ts.hub.Stats().MessagesIn, "MessagesIn")
}

// TestAuthOwnTopicBesidesLimit: the user's own topic does not count against
// MaxSubscriptions, in the URL or by message. A URL with the limit's worth
// of topics lost it: the connection opened, and its user: topic was refused
// with too_many_subscriptions, so a publish to it never came. Found by a
// helper's review.
func TestAuthOwnTopicBesidesLimit(t *testing.T) {
	ts := startAuthHub(t, broadcast.Config{MaxSubscriptions: 2})
	token := authToken(t, "alice", []string{"*"}, nil, inAnHour())

	c := mustAuthDial(t, "gorilla", ts.addr, "topics=a,b", token)
	mustReadSubscribed(t, c, "a")
	mustReadSubscribed(t, c, "b")
	mustReadSubscribed(t, c, "user:alice")
	mustReadMessage(t, c, "user:alice", ts.publish(t, "user:alice", `"private"`))
	mustWrite(t, c, subscribeMsg("c"))
	mustReadError(t, c, broadcast.CodeTooManySubscriptions)
	// Unsubscribed from its own topic, it may subscribe to it again.
	mustWrite(t, c, unsubscribeMsg("user:alice"))
	mustWrite(t, c, subscribeMsg("user:alice"))
	f := mustReadPastUnsubscribed(t, c)
	assert.Equal(t, "subscribed", f.Type, "%s", f)
	assert.Equal(t, "user:alice", f.Topic)

	// Listed in the URL (to recover it), it is not counted there either.
	c = mustAuthDial(t, "gorilla", ts.addr, "topics=user:alice,a,b", token)
	mustReadSubscribed(t, c, "user:alice")
	mustReadSubscribed(t, c, "a")
	mustReadSubscribed(t, c, "b")
	// A third topic of its choice is one too many.
	_, resp, err := authDial("gorilla", ts.addr, "topics=a,b,c", token)
	require.Error(t, err)
	require.NotNil(t, resp)
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
}
