package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestFanoutJSGapKeepsSince drives /fanout.js in headless Chromium against a
// scripted peer: after seq 1 it sends seq 3, a gap, so the client
// unsubscribes and subscribes from seq 1; the peer refuses the unsubscribe
// for the rate and answers the subscribe already_subscribed. The client
// must ask again from seq 1, and get 2 and 3 replayed; it subscribed afresh,
// and reported 2..3 lost.
func TestFanoutJSGapKeepsSince(t *testing.T) {
	lastSince := make(chan string, 1)
	up := websocket.Upgrader{}
	mux := scriptedPage("gap")
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		type request struct {
			Type, Topic, Epoch string
			Since              *int
			ID                 int
		}
		read := func(want string) (request, bool) {
			var req request
			_, p, err := ws.ReadMessage()
			return req, err == nil && json.Unmarshal(p, &req) == nil && req.Type == want
		}
		send := func(format string, a ...any) bool {
			return ws.WriteMessage(websocket.TextMessage, fmt.Appendf(nil, format, a...)) == nil
		}
		id := ""
		if r.URL.Query().Get("topics") != "t" {
			req, ok := read("subscribe")
			if !ok {
				return
			}
			id = fmt.Sprintf(`,"id":%d`, req.ID)
		}
		if !send(`{"type":"subscribed","topic":"t","seq":0,"epoch":"e1","recovered":false%s}`, id) ||
			!send(`{"topic":"t","seq":1,"data":1}`) || !send(`{"topic":"t","seq":3,"data":3}`) {
			return
		}
		if _, ok := read("unsubscribe"); !ok || !send(`{"type":"error","code":"rate_limited","message":"too many messages"}`) {
			return
		}
		req, ok := read("subscribe")
		if !ok || !send(`{"type":"error","code":"already_subscribed","topic":"t","message":"already","id":%d}`, req.ID) {
			return
		}
		if req, ok = read("unsubscribe"); !ok || !send(`{"type":"unsubscribed","topic":"t","id":%d}`, req.ID) {
			return
		}
		if req, ok = read("subscribe"); !ok {
			return
		}
		since := "none"
		if req.Since != nil {
			since = fmt.Sprintf("%d@%s", *req.Since, req.Epoch)
		}
		lastSince <- since
		if since != "1@e1" {
			send(`{"type":"subscribed","topic":"t","seq":3,"epoch":"e1","recovered":false,"id":%d}`, req.ID)
		} else if send(`{"type":"subscribed","topic":"t","seq":1,"epoch":"e1","recovered":true,"id":%d}`, req.ID) {
			send(`{"topic":"t","seq":2,"data":2}`)
			send(`{"topic":"t","seq":3,"data":3}`)
		}
		_, _, _ = ws.ReadMessage() // until the page closes
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	p := openPage(t, srv.URL+"/", 3*waitTimeout)
	subscribeJS(p, "t")
	select {
	case since := <-lastSince:
		require.Equal(t, "1@e1", since, "the last subscribe asks from the last seq delivered")
	case <-time.After(waitTimeout):
		t.Fatalf("the script did not reach the last subscribe; events: %s", eval[string](p, `JSON.stringify(window.events)`))
	}
	waitEval(p, "seq 3", `window.got.length > 0 && window.got[window.got.length - 1] === 3`)
	assert.Equal(t, "[1,2,3]", eval[string](p, `JSON.stringify(window.got)`), "each seq once, in order")
	assert.Equal(t, 0, eval[int](p, `window.events.filter((e) => e.kind === "lost").length`), "nothing was lost")
	eval[bool](p, `window.fc.close(), true`)
	p.clean()
}

// TestFanoutJSConnectTimeout: a connection attempt, the token's wait
// included, ends at connectTimeout, against a server that takes the
// connection and never answers. The token's wait and the handshake each
// had the whole timeout: a token that took 1.5 s and a timeout of 2 s made
// an attempt of 3.5 s.
func TestFanoutJSConnectTimeout(t *testing.T) {
	hole, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = hole.Close() })
	go func() {
		for {
			c, err := hole.Accept()
			if err != nil {
				return
			}
			t.Cleanup(func() { _ = c.Close() }) // held, never answered
		}
	}()
	srv := httptest.NewServer(scriptedPage("hole"))
	t.Cleanup(srv.Close)

	p := openPage(t, srv.URL+"/", 3*waitTimeout)
	took := eval[float64](p, `import("/fanout.js").then(({ Client }) => new Promise((done) => {
		const start = Date.now();
		const fc = new Client("ws://`+hole.Addr().String()+`", {
			connectTimeout: 2000, minBackoff: 60000, maxBackoff: 60000,
			token: () => new Promise((ok) => setTimeout(() => ok("tok"), 1500)),
			onEvent: (e) => { if (e.kind === "disconnected") { fc.close(); done(Date.now() - start); } },
		});
	}))`)
	t.Logf("the attempt ended after %.0f ms", took)
	// 2 s, and the page's timers' slack; 3.5 s before.
	assert.Less(t, took, 2900.0, "ms the attempt took")
	assert.GreaterOrEqual(t, took, 1900.0, "ms the attempt took")
	p.clean("WebSocket is closed before the connection is established")
}
