// Command nbio is the bench reference server built on
// github.com/lesismal/nbio: an nbhttp.Engine serves HTTP and WebSocket from
// its epoll event loops, with no goroutine per connection
// (IOModNonBlocking). The configuration follows the library's
// websocket_1m example (nbio-examples/websocket_1m/server_nbio) and README,
// except that every connection stays on the pollers (the example's
// IOModMixed would give the first MaxBlockingOnline connections a goroutine
// each).
//
// nbio has no call that sends one prepared frame to many connections: the
// message payload is built once per publish and each subscriber's
// Conn.WriteMessage frames it.
//
// Usage:
//
//	nbio [--listen HOST:PORT]
//
// Endpoints: see package contract.
package main

import (
	"context"
	"log"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/fanout/fanout/bench/peers/internal/contract"
	"github.com/lesismal/nbio/nbhttp"
	"github.com/lesismal/nbio/nbhttp/websocket"
)

const (
	// maxLoad is the most connections the engine takes.
	maxLoad = 1_000_000

	// readBufferSize is the size of a poller's read buffer (shared by the
	// connections of that poller, not one per connection).
	readBufferSize = 4 * 1024

	// maxWriteBufferBytes bounds what nbio keeps for a connection whose
	// socket buffer is full; past it the connection is closed (a slow
	// consumer). 1 MiB, as fanout's default write queue.
	maxWriteBufferBytes = 1 << 20
)

// echoConns counts the open /echo connections.
var echoConns atomic.Int64

func main() {
	addr := contract.ParseFlags("nbio")
	ctx, stop := contract.SignalContext()
	defer stop()

	h := newHub()
	wsUpgrader := h.newUpgrader()
	echoUpgrader := newEchoUpgrader()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		h.serveWs(wsUpgrader, w, r)
	})
	mux.HandleFunc("GET /echo", func(w http.ResponseWriter, r *http.Request) {
		if _, err := echoUpgrader.Upgrade(w, r, nil); err != nil {
			return // Upgrade has answered the client.
		}
		echoConns.Add(1)
	})
	mux.Handle("/publish", contract.PublishHandler(h.publish))
	mux.Handle("GET /stats", contract.StatsHandler("nbio", func() int64 {
		return h.connections.Load() + echoConns.Load()
	}))
	mux.HandleFunc("GET /healthz", contract.Healthz)

	// The listener is made here, not by the engine: if nbio's own listen
	// fails (say, the port is taken), Engine.Start's cleanup blocks for good
	// (v1.6.9) and the process would hang instead of exiting.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		log.Fatal(err)
	}
	engine := nbhttp.NewEngine(nbhttp.Config{
		Network:                 "tcp",
		Addrs:                   []string{addr},
		Listen:                  func(network, addr string) (net.Listener, error) { return ln, nil },
		MaxLoad:                 maxLoad,
		ReleaseWebsocketPayload: true,
		Handler:                 mux,
		ReadBufferSize:          readBufferSize,
		MaxWriteBufferSize:      maxWriteBufferBytes,
		IOMod:                   nbhttp.IOModNonBlocking,
	})
	if err := engine.Start(); err != nil {
		log.Fatalf("nbio.Start failed: %v", err)
	}
	log.Printf("listening on %s", ln.Addr())
	go h.pingLoop()

	<-ctx.Done()
	h.stopPinging()
	sctx, cancel := context.WithTimeout(context.Background(), contract.ShutdownTimeout)
	defer cancel()
	if err := engine.Shutdown(sctx); err != nil {
		log.Printf("shutdown: %v", err)
	}
}

// newEchoUpgrader returns the /echo upgrader: OnMessage writes every message
// back with its type, as the library's websocket example does. Echo
// connections have no read deadline (KeepaliveTime 0).
func newEchoUpgrader() *websocket.Upgrader {
	u := websocket.NewUpgrader()
	u.KeepaliveTime = 0
	u.MessageLengthLimit = contract.MaxEchoMessageBytes
	u.CheckOrigin = func(r *http.Request) bool { return true }
	u.OnMessage(func(c *websocket.Conn, messageType websocket.MessageType, data []byte) {
		_ = c.WriteMessage(messageType, data)
	})
	u.OnClose(func(c *websocket.Conn, err error) {
		echoConns.Add(-1)
	})
	return u
}
