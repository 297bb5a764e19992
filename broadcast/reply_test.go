package broadcast_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// TestRepliesInOrder: a client that sends many requests at once gets the
// answers in the order it sent them, errors included. Error frames were
// written by the connection's turn while replies went through the shard, so
// an error could overtake the reply to an earlier request.
func TestRepliesInOrder(t *testing.T) {
	const rounds = 40
	ts := startHub(t, broadcast.Config{MessageRate: 1e6}, wsconn.Config{})
	for _, kind := range clientKinds {
		t.Run(kind, func(t *testing.T) {
			c := mustDial(t, kind, ts.addr, "")
			var want []string
			for i := range rounds {
				topic := fmt.Sprintf("%s-%d", kind, i)
				mustWrite(t, c, subscribeMsg(topic))
				mustWrite(t, c, subscribeMsg(topic))
				mustWrite(t, c, unsubscribeMsg("not-"+topic))
				mustWrite(t, c, publishMsg(topic, `1`))
				want = append(want,
					"subscribed "+topic,
					"error already_subscribed "+topic,
					"error not_subscribed not-"+topic,
					"message "+topic,
					"published "+topic)
			}
			var got []string
			for range want {
				f := mustRead(t, c)
				switch {
				case f.isMessage():
					got = append(got, "message "+f.Topic)
				case f.Type == "error":
					got = append(got, "error "+f.Code+" "+f.Topic)
				default:
					got = append(got, f.Type+" "+f.Topic)
				}
			}
			require.Equal(t, strings.Join(want, "\n"), strings.Join(got, "\n"))
		})
	}
}

// TestRequestID: a client message's optional id, a string or a number,
// comes back in its reply or error; a message without one gets none.
func TestRequestID(t *testing.T) {
	ts := startHub(t, broadcast.Config{MaxSubscriptions: 1}, wsconn.Config{})
	c := mustDial(t, "gorilla", ts.addr, "")
	for _, tc := range []struct {
		send string
		want string // the reply, as JSON
	}{
		{`{"type":"subscribe","topic":"a","id":7}`, `"subscribed" "a" 7`},
		{`{"type":"subscribe","topic":"b","id":"s-b"}`, `"error" "b" "s-b" too_many_subscriptions`},
		{`{"type":"publish","topic":"p","data":1,"id":-1.5}`, `"published" "p" -1.5`},
		{`{"type":"unsubscribe","topic":"a","id":"u\"1"}`, `"unsubscribed" "a" "u\"1"`},
		{`{"type":"unsubscribe","topic":"a"}`, `"error" "a" <none> not_subscribed`},
		{`{"type":"subscribe","topic":"a b","id":null}`, `"error" "a b" <none> invalid_topic`},
		// A bad id is bad_json, which names no topic (it named c).
		{`{"type":"subscribe","topic":"c","id":{"x":1}}`, `"error" "" <none> bad_json`},
		{`{"type":"subscribe","topic":"c","id":"` + strings.Repeat("x", 65) + `"}`, `"error" "" <none> bad_json`},
		{`{"type":"subscribe","topic":"c","id":` + strings.Repeat("9", 65) + `}`, `"error" "" <none> bad_json`},
		// 64 bytes, a string's quotes aside (63 and 64 were refused).
		{`{"type":"publish","topic":"p","data":1,"id":"` + strings.Repeat("x", 64) + `"}`, `"published" "p" "` + strings.Repeat("x", 64) + `"`},
		{`{"type":"publish","topic":"p","data":1,"id":` + strings.Repeat("9", 64) + `}`, `"published" "p" ` + strings.Repeat("9", 64)},
		{`{"type":"nope","topic":"d","id":3}`, `"error" "d" 3 unknown_type`},
	} {
		mustWrite(t, c, tc.send)
		f := mustRead(t, c)
		id := "<none>"
		if raw, ok := f.Keys["id"]; ok {
			id = string(raw)
		}
		got := fmt.Sprintf("%q %q %s", f.Type, f.Topic, id)
		if f.Type == "error" {
			got += " " + f.Code
		}
		assert.Equal(t, tc.want, got, "reply to %s: %s", tc.send, f)
	}
}

// TestRepliesGathered: the answers to many requests that arrive at once go
// out gathered, many to a write, as deliveries do: queued with the shard's
// pass, or with the client's turn while it gathers its output. Each used to
// be a write of its own once the turn had ended: 40-108 writes for 400
// replies on a busy machine, 400 in CI (7-8 now, busy or not).
func TestRepliesGathered(t *testing.T) {
	const n = 400
	ts := startHub(t, broadcast.Config{MessageRate: 1e6}, wsconn.Config{})
	c := dialRaw(t, ts.addr, "/ws", 0)
	var burst []byte
	for i := range n {
		msg := publishMsg(fmt.Sprintf("g%d", i%8), `1`)
		burst = append(burst, clientFrame(0x1, len(msg), []byte(msg))...)
	}
	before := ts.srv.Stats().Writes
	c.write(t, burst)
	for i := range n {
		f, err := c.readFrame(waitTimeout)
		require.NoError(t, err, "reply %d", i)
		require.Contains(t, string(f.Payload), `"type":"published"`)
	}
	writes := ts.srv.Stats().Writes - before
	t.Logf("%d replies in %d writes", n, writes)
	assert.Less(t, writes, uint64(n/4), "replies gathered into few writes")
}
