package broadcast_test

import (
	"bytes"
	"encoding/json"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// fuzzSecret signs the fuzz targets' tokens.
var fuzzSecret = []byte("fuzz-secret-of-at-least-32-bytes")

// fuzzToken returns a token of user "fz" that may subscribe to and publish
// on fz.* only.
func fuzzToken(tb testing.TB) string {
	tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "fz", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		Subscribe:        []string{"fz.*"},
		Publish:          []string{"fz.*"},
	}).SignedString(fuzzSecret)
	require.NoError(tb, err)
	return tok
}

func fuzzVerifier(tb testing.TB) *auth.Verifier {
	v, err := auth.NewVerifier(auth.Config{Secret: fuzzSecret})
	require.NoError(tb, err)
	return v
}

// fuzzBarrier is a subscribe that the fuzz token forbids: its error reply
// follows every reply to the message before it.
const fuzzBarrier = `{"type":"subscribe","topic":"nope.barrier"}`

// FuzzClientMessage sends each input as a client message over a real,
// authenticated connection and checks the protocol's promise: whatever a
// client sends, it gets well-formed frames back (replies, errors, or the
// messages of topics it subscribed to) and the connection stays open.
func FuzzClientMessage(f *testing.F) {
	for _, seed := range []string{
		`{"type":"subscribe","topic":"fz.a"}`,
		`{"type":"subscribe","topic":"fz.a","since":0}`,
		`{"type":"subscribe","topic":"fz.b","since":18446744073709551615,"epoch":"x"}`,
		`{"type":"unsubscribe","topic":"fz.a"}`,
		`{"type":"publish","topic":"fz.a","data":{"k":[1,2,{"z":null}]}}`,
		`{"type":"publish","topic":"fz.a","data":"\u00e9\ud83d\ude00"}`,
		`{"type":"publish","topic":"other","data":1}`,
		`{"type":"subscribe","topic":"user:fz"}`,
		`{"type":"subscribe","topic":"user:someone"}`,
		`{"type":"subscribe","topic":""}`,
		`{"type":"subscribe","topic":"fz.` + string(make([]byte, 200)) + `"}`,
		`{"type":"nope"}`,
		`{"type":["subscribe"]}`,
		`[]`, `null`, `{`, ``, "\xff\xfe",
		`{"type":"publish","topic":"fz.a"}`,
		`{"type":"subscribe","topic":"fz.a","since":-1}`,
	} {
		f.Add([]byte(seed))
	}
	ts := startHub(f, broadcast.Config{Auth: fuzzVerifier(f), MaxSubscriptions: 8, HistorySize: 16}, wsconn.Config{})
	target := "/ws?token=" + fuzzToken(f)
	f.Fuzz(func(t *testing.T, msg []byte) {
		// A connection per input, so that a failing input fails alone.
		c := dialRaw(t, ts.addr, target, 0)
		readUntil(t, c, `"topic":"user:fz"`) // the automatic user topic
		op := opText
		if !utf8.Valid(msg) {
			op = 0x2 // binary: a text frame must be UTF-8, or the connection fails
		}
		c.write(t, clientFrame(op, len(msg), msg))
		c.write(t, clientFrame(opText, len(fuzzBarrier), []byte(fuzzBarrier)))
		readUntil(t, c, `\"nope.barrier\"`) // as the forbidden error quotes it, JSON-escaped
	})
}

// readUntil reads frames until one whose payload contains want, and checks
// that every frame on the way is a text frame of a JSON object of the
// protocol: a reply with a type, or a message with topic, seq and data.
func readUntil(t *testing.T, c *rawClient, want string) {
	t.Helper()
	for {
		fr, err := c.readFrame(waitTimeout)
		require.NoError(t, err, "the connection must stay open")
		require.Equal(t, opText, fr.Op, "frame %q", fr.Payload)
		var m map[string]json.RawMessage
		require.NoError(t, json.Unmarshal(fr.Payload, &m), "frame %q", fr.Payload)
		_, typed := m["type"]
		_, hasSeq := m["seq"]
		_, hasData := m["data"]
		require.True(t, typed || hasSeq && hasData, "frame %q is neither a reply nor a message", fr.Payload)
		if bytes.Contains(fr.Payload, []byte(want)) {
			return
		}
	}
}

// FuzzUpgradeQuery runs Hub.Upgrade, the parser of /ws queries, on
// arbitrary queries, with and without a token: it must never panic, and
// never accept a connection without a valid token.
func FuzzUpgradeQuery(f *testing.F) {
	for _, seed := range []string{
		"topics=fz.a,fz.b&since=fz.a:41",
		"topics=fz.a&topics=fz.b&since=fz.b:1,fz.a:2",
		"topics=a%2Cb",
		"topics=fz.a&since=fz.a:x",
		"topics=,&since=:",
		"since=fz.a:1",
		"topics=user:fz&since=user:fz:7",
		"topics=%zz",
		"token=%41&topics=fz.*",
	} {
		f.Add(seed, true)
	}
	hub := broadcast.New(broadcast.Config{Auth: fuzzVerifier(f)})
	f.Cleanup(hub.Close)
	token := fuzzToken(f)
	f.Fuzz(func(t *testing.T, query string, withToken bool) {
		r := &wsconn.Request{Path: "/ws", RawQuery: query}
		if withToken {
			r.Authorization = "Bearer " + token
		}
		h, err := hub.Upgrade(r)
		if err != nil {
			require.Nil(t, h)
			return
		}
		require.NotNil(t, h)
		require.True(t, withToken, "accepted without a token")
	})
}
