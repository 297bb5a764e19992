package broadcast_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// TestProtocolErrors sends every kind of bad client message and checks the
// error frame and that the connection stays open: a valid subscribe right
// after it works.
func TestProtocolErrors(t *testing.T) {
	ts := startHub(t, broadcast.Config{MaxSubscriptions: 3}, wsconn.Config{})
	cases := []struct {
		name string
		send string // a text message; empty: a binary frame
		code string
	}{
		{"malformed JSON", `{"type":"subscribe","topic":`, broadcast.CodeBadJSON},
		{"not JSON at all", `hello`, broadcast.CodeBadJSON},
		{"JSON array", `["subscribe","a"]`, broadcast.CodeBadJSON},
		{"topic of the wrong type", `{"type":"subscribe","topic":7}`, broadcast.CodeBadJSON},
		{"unknown type", `{"type":"frobnicate","topic":"a"}`, broadcast.CodeUnknownType},
		{"missing type", `{"topic":"a"}`, broadcast.CodeUnknownType},
		{"topic with a space", `{"type":"subscribe","topic":"a b"}`, broadcast.CodeInvalidTopic},
		{"empty topic", `{"type":"subscribe","topic":""}`, broadcast.CodeInvalidTopic},
		{"missing topic", `{"type":"subscribe"}`, broadcast.CodeInvalidTopic},
		{"200-byte topic", `{"type":"subscribe","topic":"` + strings.Repeat("a", 200) + `"}`, broadcast.CodeInvalidTopic},
		{"non-ASCII topic", `{"type":"subscribe","topic":"tôpic"}`, broadcast.CodeInvalidTopic},
		{"publish to an invalid topic", `{"type":"publish","topic":"a b","data":1}`, broadcast.CodeInvalidTopic},
		{"publish without data", `{"type":"publish","topic":"a"}`, broadcast.CodeInvalidData},
		{"unsubscribe not subscribed", `{"type":"unsubscribe","topic":"nope"}`, broadcast.CodeNotSubscribed},
		{"binary frame", "", broadcast.CodeBinaryUnsupported},
	}
	for _, kind := range clientKinds {
		t.Run(kind, func(t *testing.T) {
			for i, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					c := mustDial(t, kind, ts.addr, "")
					if tc.send == "" {
						require.NoError(t, c.WriteBinary([]byte(`{"type":"subscribe","topic":"a"}`)))
					} else {
						mustWrite(t, c, tc.send)
					}
					mustReadError(t, c, tc.code)
					// Still open: a valid subscribe and a message follow.
					topic := "after-error-" + kind + "-" + string(rune('a'+i))
					mustWrite(t, c, subscribeMsg(topic))
					r := mustReadSubscribed(t, c, topic)
					seq := ts.publish(t, topic, `{"ok":true}`)
					require.Equal(t, r.Seq+1, seq)
					m := mustReadMessage(t, c, topic, seq)
					assert.JSONEq(t, `{"ok":true}`, string(m.Data))
				})
			}
		})
	}
}

// TestSubscriptionLimits covers MaxSubscriptions and duplicate subscribes.
func TestSubscriptionLimits(t *testing.T) {
	ts := startHub(t, broadcast.Config{MaxSubscriptions: 3}, wsconn.Config{})
	for _, kind := range clientKinds {
		t.Run(kind, func(t *testing.T) {
			c := mustDial(t, kind, ts.addr, "topics=lim-1,lim-2")
			mustReadSubscribed(t, c, "lim-1")
			mustReadSubscribed(t, c, "lim-2")
			mustWrite(t, c, subscribeMsg("lim-1"))
			mustReadError(t, c, broadcast.CodeAlreadySubscribed)
			mustWrite(t, c, subscribeMsg("lim-3"))
			mustReadSubscribed(t, c, "lim-3")
			mustWrite(t, c, subscribeMsg("lim-4"))
			mustReadError(t, c, broadcast.CodeTooManySubscriptions)

			// Room again after an unsubscribe. An "unsubscribed" reply may
			// or may not come (see TestUnsubscribeReply); skip it.
			mustWrite(t, c, unsubscribeMsg("lim-2"))
			mustWrite(t, c, subscribeMsg("lim-4"))
			f := mustReadPastUnsubscribed(t, c)
			require.Equal(t, "subscribed", f.Type, "%s", f)
			require.Equal(t, "lim-4", f.Topic)

			// Nothing of the unsubscribed topic arrives any more; the
			// subscribed ones still deliver, in publish order.
			ts.publish(t, "lim-2", `"gone"`)
			s4 := ts.publish(t, "lim-4", `"four"`)
			s1 := ts.publish(t, "lim-1", `"one"`)
			mustReadMessage(t, c, "lim-4", s4)
			mustReadMessage(t, c, "lim-1", s1)
		})
	}
}

// TestUnsubscribeReply: an unsubscribe is answered through the shard, so that
// the reply follows every message queued before it (client.go unsubscribe).
// It is how a client knows that no more messages of the topic will come,
// which it needs to resubscribe with an exact since. A subscribe sent after
// the unsubscribe is answered through the same shard, so its reply must
// come after the unsubscribed one.
func TestUnsubscribeReply(t *testing.T) {
	ts := startHub(t, broadcast.Config{}, wsconn.Config{})
	for _, kind := range clientKinds {
		t.Run(kind, func(t *testing.T) {
			topic := "unsub-" + kind
			c := mustDial(t, kind, ts.addr, "topics="+topic)
			mustReadSubscribed(t, c, topic)
			seq := ts.publish(t, topic, `1`)
			mustWrite(t, c, unsubscribeMsg(topic))
			mustWrite(t, c, subscribeMsg(topic+"-next"))
			mustReadMessage(t, c, topic, seq)
			f := mustRead(t, c)
			require.Equal(t, "unsubscribed", f.Type, "want the unsubscribed reply, got %s", f)
			assert.Equal(t, topic, f.Topic, "%s", f)
			mustReadSubscribed(t, c, topic+"-next")
		})
	}
}

// TestPublishOverWebSocket: a publish message gets a "published" reply with
// the seq, and subscribers get the message.
func TestPublishOverWebSocket(t *testing.T) {
	ts := startHub(t, broadcast.Config{}, wsconn.Config{})
	sub := mustDial(t, "gorilla", ts.addr, "topics=wspub")
	mustReadSubscribed(t, sub, "wspub")
	sub2 := mustDial(t, "coder", ts.addr, "topics=wspub")
	mustReadSubscribed(t, sub2, "wspub")
	for i, kind := range clientKinds {
		pub := mustDial(t, kind, ts.addr, "")
		data := `{"from":"` + kind + `","n":[1,2,3]}`
		mustWrite(t, pub, publishMsg("wspub", data))
		r := mustRead(t, pub)
		require.Equal(t, "published", r.Type, "%s", r)
		require.Equal(t, "wspub", r.Topic)
		require.Equal(t, uint64(i+1), r.Seq)
		for _, s := range []wsClient{sub, sub2} {
			m := mustReadMessage(t, s, "wspub", uint64(i+1))
			assert.JSONEq(t, data, string(m.Data))
		}
	}
}

// TestHandshakeRejections: a bad query is rejected with 400 before the
// upgrade.
func TestHandshakeRejections(t *testing.T) {
	ts := startHub(t, broadcast.Config{MaxSubscriptions: 3}, wsconn.Config{})
	cases := []struct{ name, query string }{
		{"topic with a space", "topics=a%20b"},
		{"empty topic in the list", "topics=a,,b"},
		{"trailing comma", "topics=a,"},
		{"empty topics", "topics="},
		{"200-byte topic", "topics=" + strings.Repeat("t", 200)},
		{"more topics than MaxSubscriptions", "topics=a,b,c,d"},
		{"since names a topic not in topics", "topics=a&since=b:3"},
		{"since without topics", "since=a:3"},
		{"since without a seq", "topics=a&since=a"},
		{"since with a bad seq", "topics=a&since=a:x"},
		{"since with a negative seq", "topics=a&since=a:-1"},
		{"malformed query", "topics=%zz"},
	}
	for _, kind := range clientKinds {
		t.Run(kind, func(t *testing.T) {
			for _, tc := range cases {
				t.Run(tc.name, func(t *testing.T) {
					assert.Equal(t, http.StatusBadRequest, dialStatus(t, kind, ts.addr, tc.query))
				})
			}
			// And what is fine: names with every allowed character, the
			// same topic twice, topics given twice, exactly
			// MaxSubscriptions topics, since for a topic name that holds
			// ':', since before topics.
			c := mustDial(t, kind, ts.addr, "since=A-z_0.9:x@y/z:0&topics=A-z_0.9:x@y/z,A-z_0.9:x@y/z,b&topics=c")
			got := map[string]bool{}
			for range 3 {
				f := mustRead(t, c)
				require.Equal(t, "subscribed", f.Type, "%s", f)
				got[f.Topic] = true
			}
			assert.Equal(t, map[string]bool{"A-z_0.9:x@y/z": true, "b": true, "c": true}, got)
		})
	}
}

// TestPublishHTTP covers POST /publish.
func TestPublishHTTP(t *testing.T) {
	ts := startHub(t, broadcast.Config{}, wsconn.Config{})
	c := mustDial(t, "coder", ts.addr, "topics=http")
	mustReadSubscribed(t, c, "http")

	for i, body := range []string{`{"a":1}`, `"str"`, `42`, `null`, `[1,{"b":[]}]`, " true \n"} {
		seq, err := ts.postSeq("http", []byte(body))
		require.NoError(t, err, "body %q", body)
		require.Equal(t, uint64(i+1), seq)
		m := mustReadMessage(t, c, "http", seq)
		assert.JSONEq(t, body, string(m.Data))
	}

	bad := []struct {
		name, topic, body string
	}{
		{"invalid JSON body", "http", `{"a":`},
		{"empty body", "http", ``},
		{"two JSON values", "http", `1 2`},
		{"missing topic", "", `1`},
		{"invalid topic", "a%20b", `1`},
	}
	for _, tc := range bad {
		status, body, err := ts.post(tc.topic, []byte(tc.body))
		require.NoError(t, err)
		assert.Equal(t, http.StatusBadRequest, status, "%s: body %s", tc.name, body)
		var e map[string]string
		assert.NoError(t, json.Unmarshal(body, &e), "%s: the 400 body is JSON", tc.name)
		assert.NotEmpty(t, e["error"], tc.name)
	}

	// Topic names: up to MaxTopicBytes (128).
	_, err := ts.postSeq(strings.Repeat("n", 128), []byte(`1`))
	require.NoError(t, err, "a 128-byte topic name")
	status, _, err := ts.post(strings.Repeat("n", 129), []byte(`1`))
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, status, "a 129-byte topic name")

	resp, err := httpClient.Get("http://" + ts.addr + "/publish?topic=http")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
	assert.Equal(t, http.MethodPost, resp.Header.Get("Allow"))

	// None of the failed requests published anything.
	seq, err := ts.postSeq("http", []byte(`"last"`))
	require.NoError(t, err)
	require.Equal(t, uint64(7), seq)
	mustReadMessage(t, c, "http", 7)
	assert.Equal(t, uint64(8), ts.hub.Stats().MessagesIn)
}

// TestPublishInvalidUTF8: messages go out as text frames, which must be
// valid UTF-8 (RFC 6455 section 5.6), so data that is not UTF-8 must be
// refused like any other data that is not JSON text, and no subscriber may
// get a text frame that is not UTF-8.
func TestPublishInvalidUTF8(t *testing.T) {
	ts := startHub(t, broadcast.Config{}, wsconn.Config{})
	sub := dialRaw(t, ts.addr, "/ws?topics=utf8", 0)
	f, err := sub.readFrame(waitTimeout)
	require.NoError(t, err)
	require.Contains(t, string(f.Payload), `"subscribed"`)

	status, body, err := ts.post("utf8", []byte("\"\xff\xfe\""))
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadRequest, status, "POST of a body that is not UTF-8: %s", body)
	_, err = ts.hub.Publish("utf8", []byte("{\"k\":\"\xc3\x28\"}"))
	assert.ErrorIs(t, err, broadcast.ErrInvalidData, "Publish of data that is not UTF-8")

	ts.publish(t, "utf8", `"ok"`)
	for {
		f, err := sub.readFrame(waitTimeout)
		require.NoError(t, err)
		require.Equal(t, opText, f.Op)
		require.True(t, utf8.Valid(f.Payload), "a text frame that is not UTF-8 went out: %q", f.Payload)
		if strings.Contains(string(f.Payload), `"data":"ok"`) {
			break
		}
	}
}

// TestClosedHub: once the hub is closed, publishes get 503/ErrClosed,
// upgrades 503, and the messages of clients still connected get error
// frames "unavailable".
func TestClosedHub(t *testing.T) {
	ts := startHub(t, broadcast.Config{}, wsconn.Config{})
	var clients []wsClient
	for _, kind := range clientKinds {
		c := mustDial(t, kind, ts.addr, "topics=a")
		mustReadSubscribed(t, c, "a")
		clients = append(clients, c)
	}
	ts.hub.Close()
	ts.hub.Close() // twice is fine
	_, err := ts.hub.Publish("a", []byte("1"))
	assert.ErrorIs(t, err, broadcast.ErrClosed)
	status, _, err := ts.post("a", []byte("1"))
	require.NoError(t, err)
	assert.Equal(t, http.StatusServiceUnavailable, status)
	for _, kind := range clientKinds {
		assert.Equal(t, http.StatusServiceUnavailable, dialStatus(t, kind, ts.addr, "topics=a"))
	}
	for _, c := range clients {
		mustWrite(t, c, subscribeMsg("b"))
		mustReadError(t, c, broadcast.CodeUnavailable)
		mustWrite(t, c, publishMsg("a", "1"))
		mustReadError(t, c, broadcast.CodeUnavailable)
		mustWrite(t, c, unsubscribeMsg("a")) // no reply needed; no crash
		mustWrite(t, c, unsubscribeMsg("a"))
		mustReadError(t, c, broadcast.CodeNotSubscribed)
	}
}

func TestParsePolicy(t *testing.T) {
	for _, p := range []broadcast.Policy{broadcast.Disconnect, broadcast.Drop} {
		got, err := broadcast.ParsePolicy(p.String())
		require.NoError(t, err)
		assert.Equal(t, p, got)
	}
	_, err := broadcast.ParsePolicy("ignore")
	assert.Error(t, err)
}
