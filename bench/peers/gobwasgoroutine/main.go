// Command gobwasgoroutine is the bench reference server built on
// github.com/gobwas/ws with one goroutine per connection, as in the
// library's README: ws.UpgradeHTTP in a net/http handler, then a goroutine
// that reads the connection's frames with wsutil. Writes to a subscriber
// (published messages, pings, control replies) are made under its mutex,
// from whichever goroutine has something to send.
//
// A message is compiled once per publish into one server frame
// (ws.CompileFrame); the same bytes are written to every subscriber.
//
// Usage:
//
//	gobwasgoroutine [--listen HOST:PORT]
//
// Endpoints: see package contract.
package main

import (
	"bufio"
	"io"
	"log"
	"net"
	"net/http"
	"sync/atomic"

	"github.com/fanout/fanout/bench/peers/internal/contract"
	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
)

// echoConns counts the open /echo connections.
var echoConns atomic.Int64

func main() {
	addr := contract.ParseFlags("gobwasgoroutine")
	ctx, stop := contract.SignalContext()
	defer stop()

	h := newHub()
	go h.pingLoop()

	mux := http.NewServeMux()
	mux.HandleFunc("GET /ws", h.serveWs)
	mux.HandleFunc("GET /echo", serveEcho)
	mux.Handle("/publish", contract.PublishHandler(h.publish))
	mux.Handle("GET /stats", contract.StatsHandler("gobwasgoroutine", func() int64 {
		return h.connections.Load() + echoConns.Load()
	}))
	mux.HandleFunc("GET /healthz", contract.Healthz)

	err := contract.ServeHTTP(ctx, addr, mux)
	h.shutdown()
	if err != nil {
		log.Fatal(err)
	}
}

// source is what to read a just-upgraded connection from: the connection
// itself, or the hijacked buffered reader if the client has already sent
// bytes after its handshake (the reader is then kept for good).
func source(conn net.Conn, rw *bufio.ReadWriter) io.Reader {
	if rw != nil && rw.Reader.Buffered() > 0 {
		return rw.Reader
	}
	return conn
}

// serveEcho handles /echo as the README's example does: a goroutine reads
// each message with wsutil.ReadClientData (which answers pings and close
// frames itself) and writes it back with wsutil.WriteServerMessage. This
// goroutine is the connection's only writer.
func serveEcho(w http.ResponseWriter, r *http.Request) {
	conn, rw, _, err := ws.UpgradeHTTP(r, w)
	if err != nil {
		return // UpgradeHTTP has answered the client.
	}
	echoConns.Add(1)
	go func() {
		defer echoConns.Add(-1)
		defer conn.Close()
		src := struct {
			io.Reader
			io.Writer
		}{source(conn, rw), conn}
		for {
			msg, op, err := wsutil.ReadClientData(src)
			if err != nil {
				return
			}
			if err := wsutil.WriteServerMessage(conn, op, msg); err != nil {
				return
			}
		}
	}()
}

func init() {
	// Limits of wsutil.ReadClientData (wsutil.DefaultReader).
	wsutil.SetMaxMessageSize(contract.MaxEchoMessageBytes)
	wsutil.SetCheckUTF8(true)
}
