// Command gws is the bench reference server built on github.com/lxzan/gws,
// set up as the README's "Best Practice" shows: a gws.Upgrader behind a
// net/http handler, and `go socket.ReadLoop()` so that the handler returns
// and the request can be collected. Each connection has its reading
// goroutine; writes go through gws's per-connection write queue.
//
// A message is built once per publish as a gws.Broadcaster (the README's
// "Broadcast" section), which frames it once and queues the same frame to
// every subscriber.
//
// Usage:
//
//	gws [--listen HOST:PORT]
//
// Endpoints: see package contract.
package main

import (
	"log"
	"net/http"
	"sync/atomic"

	"github.com/fanout/fanout/bench/peers/internal/contract"
	"github.com/lxzan/gws"
)

// serverOption returns the options of both upgraders: messages are handled in
// order on the connection's reading goroutine (ParallelEnabled false: the
// echo must keep the order), no compression (PermessageDeflate off: a
// compressor per connection costs memory), text is checked for UTF-8, and
// Recovery logs a panicking handler instead of crashing the server. Read
// buffers are gws's default 4 KiB.
func serverOption() *gws.ServerOption {
	return &gws.ServerOption{
		ParallelEnabled:    false,
		PermessageDeflate:  gws.PermessageDeflate{Enabled: false},
		CheckUtf8Enabled:   true,
		ReadMaxPayloadSize: contract.MaxEchoMessageBytes,
		Recovery:           gws.Recovery,
	}
}

func main() {
	addr := contract.ParseFlags("gws")
	ctx, stop := contract.SignalContext()
	defer stop()

	h := newHub()
	go h.pingLoop()
	wsUpgrader := gws.NewUpgrader(h, h.option())
	echo := &echoHandler{}
	echoUpgrader := gws.NewUpgrader(echo, serverOption())

	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		socket, err := wsUpgrader.Upgrade(w, r)
		if err != nil {
			return // Upgrade has answered the client.
		}
		go socket.ReadLoop()
	})
	mux.HandleFunc("GET /echo", func(w http.ResponseWriter, r *http.Request) {
		socket, err := echoUpgrader.Upgrade(w, r)
		if err != nil {
			return // Upgrade has answered the client.
		}
		go socket.ReadLoop()
	})
	mux.Handle("/publish", contract.PublishHandler(h.publish))
	mux.Handle("GET /stats", contract.StatsHandler("gws", func() int64 {
		return h.connections.Load() + echo.connections.Load()
	}))
	mux.HandleFunc("GET /healthz", contract.Healthz)

	err := contract.ServeHTTP(ctx, addr, mux)
	h.shutdown()
	if err != nil {
		log.Fatal(err)
	}
}

// echoHandler is the gws.Event of /echo connections: every message goes back
// with its opcode. Echo connections have no deadline.
type echoHandler struct {
	gws.BuiltinEventHandler
	connections atomic.Int64
}

func (e *echoHandler) OnOpen(socket *gws.Conn) { e.connections.Add(1) }

func (e *echoHandler) OnClose(socket *gws.Conn, err error) { e.connections.Add(-1) }

func (e *echoHandler) OnPing(socket *gws.Conn, payload []byte) { _ = socket.WritePong(payload) }

func (e *echoHandler) OnMessage(socket *gws.Conn, message *gws.Message) {
	defer message.Close()
	_ = socket.WriteMessage(message.Opcode, message.Bytes())
}
