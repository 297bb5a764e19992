package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"

	"github.com/fanout/fanout/client/js"
)

// scriptedPage serves /fanout.js and a blank page titled title at /, for
// a test to drive fanout.js in Chromium against a peer it adds to the mux.
func scriptedPage(title string) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /fanout.js", js.Handler())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `<!doctype html><link rel="icon" href="data:,"><title>`+title+`</title><div id="connections">scripted</div>`)
	})
	return mux
}

// TestFanoutJSLaggingNode drives /fanout.js in headless Chromium against a
// scripted peer that plays two nodes of a cluster: the first sends 1..6 of
// topic t and goes away; the second, behind in the same epoch, answers the
// reconnect's since=t:6@e1 with seq 4, not recovered, and sends 5, 6 and 7.
// The client took 4 as the last seq delivered and delivered 5 and 6 twice.
// The peer speaks the wire protocol v1 as README gives it.
func TestFanoutJSLaggingNode(t *testing.T) {
	var conns atomic.Int32
	sinceAsked := make(chan string, 1)
	up := websocket.Upgrader{}
	mux := scriptedPage("lag")
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		send := func(v string) bool { return ws.WriteMessage(websocket.TextMessage, []byte(v)) == nil }
		msg := func(seq int) bool { return send(fmt.Sprintf(`{"topic":"t","seq":%d,"data":{"n":%d}}`, seq, seq)) }
		switch conns.Add(1) {
		case 1: // the first node: t subscribed (in the query, or by message), then 1..6
			id := ""
			if r.URL.Query().Get("topics") != "t" {
				_, p, err := ws.ReadMessage()
				if err != nil {
					return
				}
				var req struct {
					Type, Topic string
					ID          int
				}
				if json.Unmarshal(p, &req) != nil || req.Type != "subscribe" || req.Topic != "t" {
					return
				}
				id = fmt.Sprintf(`,"id":%d`, req.ID)
			}
			if !send(`{"type":"subscribed","topic":"t","seq":0,"epoch":"e1","recovered":false` + id + `}`) {
				return
			}
			for seq := 1; seq <= 6; seq++ {
				if !msg(seq) {
					return
				}
			}
			// Going away once the page has them all (it reads them
			// before the close).
			_ = ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseGoingAway, "restart"), time.Now().Add(time.Second))
			_, _, _ = ws.ReadMessage()
		case 2: // the second node, behind: its watch is at 4
			sinceAsked <- r.URL.Query().Get("topics") + " " + r.URL.Query().Get("since")
			if !send(`{"type":"subscribed","topic":"t","seq":4,"epoch":"e1","recovered":false}`) {
				return
			}
			for seq := 5; seq <= 7; seq++ {
				if !msg(seq) {
					return
				}
			}
			_, _, _ = ws.ReadMessage() // until the page closes
		}
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)

	p := openPage(t, srv.URL+"/", 3*waitTimeout)
	subscribeJS(p, "t")
	waitEval(p, "seq 7", `window.got.length > 0 && window.got[window.got.length - 1] === 7`)
	assert.Equal(t, "t t:6@e1", <-sinceAsked, "the reconnect asks from the last seq delivered")
	assert.Equal(t, "[1,2,3,4,5,6,7]", eval[string](p, `JSON.stringify(window.got)`), "each seq once, in order")
	assert.Equal(t, 0, eval[int](p, `window.events.filter((e) => e.kind === "lost").length`), "nothing was lost")
	assert.Equal(t, `[0,6]`, eval[string](p, `JSON.stringify(window.events.filter((e) => e.kind === "subscribed").map((e) => e.seq))`),
		"messages follow the last seq delivered")
	eval[bool](p, `window.fc.close(), true`)
	p.clean()
}
