package client_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/client"
)

// peerRequest is what a scripted peer reads from the client.
type peerRequest struct {
	Type  string  `json:"type"`
	Topic string  `json:"topic"`
	Since *uint64 `json:"since"`
	Epoch string  `json:"epoch"`
	ID    uint64  `json:"id"`
}

// TestGapRecoveryKeepsSinceWhenUnsubscribeRefused: a gap makes the client
// unsubscribe and subscribe again from its last seq. When the server refuses
// the unsubscribe for the message rate and takes the subscribe, which it
// answers already_subscribed, the client asks again from the same seq; it
// used to subscribe afresh, dropping since, so that what the server could
// replay was reported lost (not_recovered) and never delivered.
func TestGapRecoveryKeepsSinceWhenUnsubscribeRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	lastSince := make(chan *uint64, 1)
	peerErr := make(chan error, 1)
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer conn.CloseNow()
		peerErr <- scriptGap(ctx, conn, lastSince)
	}))
	defer hs.Close()

	rec := newRecorder()
	c := dial(t, "ws"+strings.TrimPrefix(hs.URL, "http"), &client.Options{OnEvent: rec.event})
	require.NoError(t, c.Subscribe("t", rec.handler))
	require.NoError(t, <-peerErr)
	rec.waitFor(t, "seqs 1 to 3, or a loss", func() bool {
		return len(rec.msgs["t"]) == 3 || rec.countLocked(client.Lost, "t") > 0
	})
	since := <-lastSince
	require.NotNil(t, since, "the last subscribe asked from no seq")
	assert.Equal(t, uint64(1), *since)
	rec.mu.Lock()
	defer rec.mu.Unlock()
	assert.Equal(t, []uint64{1, 2, 3}, rec.seqsLocked("t"))
	assert.Zero(t, rec.countLocked(client.Lost, "t"), "events %v", rec.events)
}

// scriptGap plays the server: subscribed at 0, seq 1, then seq 3 (a gap);
// the unsubscribe that follows refused for the rate, the subscribe with
// since answered already_subscribed; then it answers what comes next and
// replays 2 and 3 when the last subscribe asks from seq 1. It sends the last
// subscribe's since on lastSince.
func scriptGap(ctx context.Context, conn *websocket.Conn, lastSince chan<- *uint64) error {
	read := func(want string) (peerRequest, error) {
		var r peerRequest
		_, p, err := conn.Read(ctx)
		if err != nil {
			return r, err
		}
		if err := json.Unmarshal(p, &r); err != nil {
			return r, err
		}
		if r.Type != want {
			return r, &unexpected{want: want, got: string(p)}
		}
		return r, nil
	}
	send := func(s string) error { return conn.Write(ctx, websocket.MessageText, []byte(s)) }
	sub, err := read("subscribe")
	if err != nil {
		return err
	}
	if err := send(`{"type":"subscribed","topic":"t","seq":0,"epoch":"E","recovered":false,"id":` + itoa(sub.ID) + `}`); err != nil {
		return err
	}
	if err := send(`{"topic":"t","seq":1,"data":1}`); err != nil {
		return err
	}
	if err := send(`{"topic":"t","seq":3,"data":3}`); err != nil {
		return err
	}
	if _, err := read("unsubscribe"); err != nil {
		return err
	}
	if err := send(`{"type":"error","code":"rate_limited","message":"too many messages"}`); err != nil {
		return err
	}
	sub, err = read("subscribe")
	if err != nil {
		return err
	}
	if err := send(`{"type":"error","code":"already_subscribed","topic":"t","message":"already subscribed","id":` + itoa(sub.ID) + `}`); err != nil {
		return err
	}
	unsub, err := read("unsubscribe")
	if err != nil {
		return err
	}
	if err := send(`{"type":"unsubscribed","topic":"t","id":` + itoa(unsub.ID) + `}`); err != nil {
		return err
	}
	sub, err = read("subscribe")
	if err != nil {
		return err
	}
	lastSince <- sub.Since
	if sub.Since == nil || *sub.Since != 1 || sub.Epoch != "E" {
		// Nothing to recover from: messages start after 3.
		return send(`{"type":"subscribed","topic":"t","seq":3,"epoch":"E","recovered":false,"id":` + itoa(sub.ID) + `}`)
	}
	for _, s := range []string{
		`{"type":"subscribed","topic":"t","seq":1,"epoch":"E","recovered":true,"id":` + itoa(sub.ID) + `}`,
		`{"topic":"t","seq":2,"data":2}`,
		`{"topic":"t","seq":3,"data":3}`,
	} {
		if err := send(s); err != nil {
			return err
		}
	}
	return nil
}

// unexpected is a message the script did not expect.
type unexpected struct{ want, got string }

func (u *unexpected) Error() string { return "want a " + u.want + ", got " + u.got }

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }
