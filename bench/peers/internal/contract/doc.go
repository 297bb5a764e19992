// Package contract holds what the reference servers in bench/peers share and
// what has nothing to do with their WebSocket library: the flags, the /stats
// numbers, the message envelope, the POST /publish handler and the HTTP
// server's start and graceful stop.
//
// The contract every peer serves (the load harness relies on it):
//
//	GET  /ws?topics=NAME[,NAME...]  upgrade; subscribe to the topics; nothing is sent on connect
//	POST /publish?topic=NAME        body: a JSON value; every subscriber gets one text message
//	                                {"topic":"NAME","seq":N,"data":<body>}; answer 202 {"seq":N}
//	GET  /echo                      upgrade; every message comes back as it came (text or binary)
//	GET  /stats                     JSON, see Stats
//	GET  /healthz                   200 ok
//
// Subscriber connections (/ws) are pinged every PingPeriod and dropped after
// PongWait without any frame from the client, as in gorilla/websocket's chat
// example; /echo connections have no keepalive, as in the libraries' echo
// examples.
package contract

import "time"

const (
	// DefaultListen is the default of the --listen flag.
	DefaultListen = "127.0.0.1:8080"

	// MaxPublishBytes is the largest POST /publish body; a larger one gets 413.
	MaxPublishBytes = 1 << 20

	// MaxEchoMessageBytes is the largest message an /echo connection reads.
	MaxEchoMessageBytes = 1 << 20

	// MaxTopicBytes is the longest topic name.
	MaxTopicBytes = 128

	// WriteWait is the time allowed to write one message to a peer.
	WriteWait = 10 * time.Second

	// PongWait is the time allowed to read the next frame (a pong, at least)
	// from a subscriber.
	PongWait = 60 * time.Second

	// PingPeriod is how often a subscriber is pinged. Less than PongWait.
	PingPeriod = PongWait * 9 / 10

	// ShutdownTimeout bounds the graceful stop after SIGINT or SIGTERM.
	ShutdownTimeout = 5 * time.Second
)
