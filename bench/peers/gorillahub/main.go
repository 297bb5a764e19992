// Command gorillahub is the bench reference server built on
// github.com/gorilla/websocket in the style of its chat example
// (examples/chat): one Hub goroutine owns the subscribers and the topics
// through register, unregister and broadcast channels, and every subscriber
// has a readPump and a writePump goroutine and a buffered send channel of 256
// messages; a subscriber whose send channel is full is dropped.
//
// A message is built once per publish as a *websocket.PreparedMessage, whose
// frame bytes gorilla builds once and shares between all the connections.
//
// Usage:
//
//	gorillahub [--listen HOST:PORT]
//
// Endpoints: see package contract.
package main

import (
	"log"
	"net/http"
	"sync"
	"sync/atomic"

	"github.com/fanout/fanout/bench/peers/internal/contract"
	"github.com/gorilla/websocket"
)

// upgrader is configured as the chat example's (1 KiB read and write buffers),
// with the write buffer pool that gorilla's documentation recommends for a
// modest volume of writes across a large number of connections: a connection
// holds a write buffer only while it writes.
var upgrader = websocket.Upgrader{
	ReadBufferSize:  1024,
	WriteBufferSize: 1024,
	WriteBufferPool: &sync.Pool{},
	CheckOrigin:     func(r *http.Request) bool { return true },
}

// echoConns counts the open /echo connections.
var echoConns atomic.Int64

func main() {
	addr := contract.ParseFlags("gorillahub")
	ctx, stop := contract.SignalContext()
	defer stop()

	hub := newHub()
	go hub.run()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		serveWs(hub, w, r)
	})
	mux.HandleFunc("GET /echo", serveEcho)
	mux.Handle("/publish", contract.PublishHandler(hub.publish))
	mux.Handle("GET /stats", contract.StatsHandler("gorillahub", func() int64 {
		return hub.connections.Load() + echoConns.Load()
	}))
	mux.HandleFunc("GET /healthz", contract.Healthz)

	err := contract.ServeHTTP(ctx, addr, mux)
	hub.shutdown()
	if err != nil {
		log.Fatal(err)
	}
}

// serveEcho handles /echo as gorilla's echo example (examples/echo) does:
// read a message, write it back with the same type.
func serveEcho(w http.ResponseWriter, r *http.Request) {
	c, err := upgrader.Upgrade(w, r, nil)
	if err != nil {
		return // Upgrade has answered the client.
	}
	echoConns.Add(1)
	defer echoConns.Add(-1)
	defer c.Close()
	c.SetReadLimit(contract.MaxEchoMessageBytes)
	for {
		mt, message, err := c.ReadMessage()
		if err != nil {
			return
		}
		if err := c.WriteMessage(mt, message); err != nil {
			return
		}
	}
}
