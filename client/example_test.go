package client_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/client"
	"github.com/fanout/fanout/wsconn"
)

// exampleServer starts fanout in-process on loopback, as "fanout serve
// --no-auth" would serve it, and returns its URL and a func that stops it.
func exampleServer() (string, func()) {
	quiet := slog.New(slog.DiscardHandler)
	hub := broadcast.New(broadcast.Config{Logger: quiet})
	mux := http.NewServeMux()
	mux.Handle("/publish", hub.PublishHandler())
	srv, err := wsconn.NewServer(wsconn.Config{
		Upgrade: func(r *wsconn.Request) (wsconn.Handler, error) { return hub.Upgrade(r) },
		HTTP:    mux,
		Logger:  quiet,
	})
	if err != nil {
		panic(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	go func() { _ = srv.Serve(ln) }()
	return "ws://" + ln.Addr().String(), func() {
		hub.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}
}

func Example() {
	url, stop := exampleServer()
	defer stop()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	subscribed := make(chan struct{})
	c, err := client.Dial(ctx, url, &client.Options{
		OnEvent: func(e client.Event) {
			switch e.Kind {
			case client.Subscribed:
				close(subscribed)
			case client.Lost:
				// Tell the application: resync from your source.
				fmt.Println("lost", e.Topic, e.From, "to", e.To)
			}
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()

	got := make(chan client.Message)
	if err := c.Subscribe("prices", func(m client.Message) { got <- m }); err != nil {
		fmt.Println(err)
		return
	}
	<-subscribed
	if _, err := c.Publish(ctx, "prices", []byte(`{"eur":1.08}`)); err != nil {
		fmt.Println(err)
		return
	}
	m := <-got
	fmt.Println(m.Topic, m.Seq, string(m.Data))
	// Output: prices 1 {"eur":1.08}
}
