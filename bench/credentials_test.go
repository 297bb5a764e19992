package bench

import (
	"bufio"
	"bytes"
	"context"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/golang-jwt/jwt/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

const testSecret = "0123456789abcdef0123456789abcdef"

// bearer returns the token of the Authorization header in an upgrade
// request, or "".
func bearer(t *testing.T, req []byte) string {
	t.Helper()
	r, err := http.ReadRequest(bufioReader(req))
	require.NoError(t, err)
	tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return tok
}

// TestMintPerClient: with --jwt-secret each connection presents a token of
// its own, which the server's verifier accepts and which grants the topic;
// with --token every connection presents that one.
func TestMintPerClient(t *testing.T) {
	v, err := auth.NewVerifier(auth.Config{Secret: []byte(testSecret)})
	require.NoError(t, err)

	creds, err := newCredentials("", testSecret, "room.1")
	require.NoError(t, err)
	plan, err := newDialPlan(&engine{key: "dGhlIHNhbXBsZSBub25jZQ=="}, &dialCommand{Kind: "subscriber", Targets: []dialTarget{{Addr: "127.0.0.1:1", Host: "h"}}, Path: "/ws?topics=room.1", Auth: creds})
	require.NoError(t, err)
	subs := map[string]bool{}
	for range 3 {
		req, err := plan.upgrade(0)
		require.NoError(t, err)
		id, err := v.Verify(bearer(t, req))
		require.NoError(t, err)
		assert.True(t, id.CanSubscribe("room.1"))
		assert.True(t, id.CanPublish("room.1"))
		assert.False(t, id.CanSubscribe("room.2"))
		assert.False(t, id.Expired(time.Now().Add(time.Hour)))
		subs[id.User()] = true
	}
	assert.Len(t, subs, 3, "one user per client")

	creds, err = newCredentials("given.token.here", "", "room.1")
	require.NoError(t, err)
	plan, err = newDialPlan(&engine{key: "dGhlIHNhbXBsZSBub25jZQ=="}, &dialCommand{Kind: "subscriber", Targets: []dialTarget{{Addr: "127.0.0.1:1", Host: "h"}}, Path: "/ws", Auth: creds})
	require.NoError(t, err)
	for range 2 {
		req, err := plan.upgrade(0)
		require.NoError(t, err)
		assert.Equal(t, "given.token.here", bearer(t, req))
	}

	plan, err = newDialPlan(&engine{key: "dGhlIHNhbXBsZSBub25jZQ=="}, &dialCommand{Kind: "subscriber", Targets: []dialTarget{{Addr: "127.0.0.1:1", Host: "h"}}, Path: "/ws"})
	require.NoError(t, err)
	req, err := plan.upgrade(0)
	require.NoError(t, err)
	assert.Empty(t, bearer(t, req))
}

// TestCredentialsFlags: the two flags exclude each other, a secret the
// server would refuse is refused, and the environment stands in for an
// absent flag.
func TestCredentialsFlags(t *testing.T) {
	t.Setenv("FANOUT_TOKEN", "")
	t.Setenv("FANOUT_JWT_SECRET", "")
	_, err := newCredentials("t", testSecret, "x")
	assert.ErrorContains(t, err, "exclude")
	_, err = newCredentials("", "short", "x")
	assert.ErrorContains(t, err, "32")
	c, err := newCredentials("", "", "x")
	require.NoError(t, err)
	assert.Nil(t, c)

	t.Setenv("FANOUT_JWT_SECRET", testSecret)
	c, err = newCredentials("", "", "x")
	require.NoError(t, err)
	require.NotNil(t, c)
	assert.Equal(t, testSecret, c.Secret)
	c, err = newCredentials("flag", "", "x")
	require.NoError(t, err)
	assert.Equal(t, "flag", c.Token, "a flag wins over the environment")
}

// TestAuthenticated runs the fanout scenario against a server with
// authentication: with --jwt-secret or --token every subscriber connects
// and every message reaches all of them; with neither, the run fails.
func TestAuthenticated(t *testing.T) {
	t.Setenv("FANOUT_TOKEN", "")
	t.Setenv("FANOUT_JWT_SECRET", "")
	v, err := auth.NewVerifier(auth.Config{Secret: []byte(testSecret)})
	require.NoError(t, err)
	ts := startServer(t, broadcast.Config{Auth: v})
	token, err := auth.SignHS256([]byte(testSecret), auth.Claims{
		RegisteredClaims: jwt.RegisteredClaims{Subject: "loader", ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))},
		Subscribe:        jwt.ClaimStrings{"bench"},
		Publish:          jwt.ClaimStrings{"bench"},
	})
	require.NoError(t, err)

	for _, tc := range []struct {
		name          string
		token, secret string
	}{
		{"jwt-secret", "", testSecret},
		{"token", token, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := testOptions(t, ts.url)
			o.Token, o.JWTSecret = tc.token, tc.secret
			rep, err := Run(context.Background(), "fanout", o, os.Stderr, testLogger())
			require.NoError(t, err)
			require.NotNil(t, rep.Dial)
			assert.EqualValues(t, 300, rep.Dial.Open)
			assert.Zero(t, rep.Dial.Failed)
			require.NotNil(t, rep.Fanout)
			assert.EqualValues(t, 300*5, rep.Fanout.Receipts)
		})
	}
	t.Run("none", func(t *testing.T) {
		o := testOptions(t, ts.url)
		o.Conns = 20
		var stderr bytes.Buffer
		_, err := Run(context.Background(), "fanout", o, &stderr, testLogger())
		require.Error(t, err)
		assert.Contains(t, err.Error()+stderr.String(), "401")
	})
}

func bufioReader(b []byte) *bufio.Reader { return bufio.NewReader(bytes.NewReader(b)) }

// --compression offers permessage-deflate in every upgrade; fanout accepts
// it, and the subscribers read its frames as before.
func TestCompressionOffered(t *testing.T) {
	assert.Contains(t, string(upgradeRequest("h", "/ws", "k", "", deflateOffer)), "\r\nSec-WebSocket-Extensions: permessage-deflate; ")
	assert.NotContains(t, string(upgradeRequest("h", "/ws", "k", "", "")), "Sec-WebSocket-Extensions")

	ts := startServer(t, broadcast.Config{})
	o := testOptions(t, ts.url)
	o.Compression = true
	o.PayloadBytes = 1024 // over the server's --compression-min-bytes
	rep, err := Run(context.Background(), "fanout", o, os.Stderr, testLogger())
	require.NoError(t, err)
	assert.True(t, rep.Params.Compression)
	assert.EqualValues(t, 300, rep.Dial.Open)
	// Every receipt counted, each read from a compressed frame.
	assert.EqualValues(t, 300*5, rep.Fanout.Receipts)
	assert.EqualValues(t, 300, ts.srv.Stats().CompressedUpgrades)
	assert.EqualValues(t, 300*5, ts.hub.Stats().CompressedDeliveries)
	assert.EqualValues(t, 5, ts.hub.Stats().MessagesCompressed)
}

// The bench's padding compresses as feed data does, not as a run of one
// byte: between a fifth and a half.
func TestBroadcastDataCompresses(t *testing.T) {
	d := broadcastData(time.Now().UnixNano(), 1024)
	require.Len(t, d, 1024)
	frame := wsconn.NewFrame(ws.OpText, d)
	c := wsconn.NewDeflater(1).CompressFrame(frame)
	require.NotNil(t, c)
	ratio := float64(len(c)) / float64(len(frame))
	t.Logf("1 KiB of bench data compresses to %.2f", ratio)
	assert.Greater(t, ratio, 0.2)
	assert.Less(t, ratio, 0.5)
}

func TestPrefixInflater(t *testing.T) {
	var z prefixInflater
	d := broadcastData(42, 1024)
	frame := wsconn.NewDeflater(1).CompressFrame(wsconn.NewFrame(ws.OpText, d))
	h, ok := parseFrameHeader(frame)
	require.True(t, ok)
	assert.Equal(t, d[:prefixBytes], z.prefix(frame[h.size:]))
	assert.Nil(t, z.prefix([]byte{0xff, 0xff, 0xff}), "does not inflate")
	assert.Equal(t, d[:prefixBytes], z.prefix(frame[h.size:]), "the reader is reused")
}
