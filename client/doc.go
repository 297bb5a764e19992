// Package client is a Go client of fanout's wire protocol v1 that never
// loses a message silently.
//
// A Client holds one WebSocket connection and keeps it: when the
// connection fails, or the server closes it (idle, slow consumer 4008,
// shutdown 1001, token expiry 4001), it reconnects with exponential backoff
// and full jitter, and resubscribes every topic with since=topic:seq@epoch,
// the last message it delivered. Each handler gets each seq of its topic
// once and in order: duplicates are dropped, and a gap the server did not
// announce makes the client ask again from the last seq delivered. What
// cannot be delivered is reported as a Lost event: messages the server
// dropped for a slow handler, and those a reconnect could not recover
// because the server's history no longer holds them or started afresh
// (a new epoch, as after a restart).
//
// One goroutine reads the connection and runs the handlers and the event
// callback, in order; there is no goroutine per subscription, and a slow
// handler backs the socket up rather than growing a buffer. The socket is
// github.com/coder/websocket's.
//
// Publish posts to the server's POST /publish, so it works while the
// client reconnects and may be called from a handler.
package client
