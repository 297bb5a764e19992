package main

import (
	"fmt"
	"math"
	"net"
	"time"

	"github.com/fanout/fanout/wsconn"
)

// minHeaderBytes is the smallest --max-header-bytes that a WebSocket
// handshake fits in: a request line, Host, Upgrade, Connection, the key and
// the version take about 200 bytes; browsers send several hundred more.
const minHeaderBytes = 512

// validate refuses flag values that would start a server that does not do
// what they say: negative counts, sizes and durations, zero where zero
// means nothing, an idle timeout that the pings cannot beat, a header limit
// no handshake fits in. The error names the flag.
func (o *serveOptions) validate() error {
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return fmt.Errorf("--listen %s: want HOST:PORT: %w", o.listen, err)
	}
	if o.sendBufferBytes > math.MaxInt32/2 {
		return fmt.Errorf("--send-buffer-bytes %s: at most 1GiB-1 (Linux doubles it, in an int)", o.sendBufferBytes)
	}
	for _, f := range []struct {
		name string
		v    int64
		min  int64 // the least valid value
	}{
		{"workers", int64(o.workers), 0},
		{"shards", int64(o.shards), 0},
		{"max-connections", int64(o.maxConns), 0},
		{"max-connections-per-ip", int64(o.maxConnsPerIP), 0},
		{"max-handshakes", int64(o.maxHandshakes), 1},
		{"max-http-handlers", int64(o.maxHTTPHandlers), 1},
		{"http-keepalive-requests", int64(o.httpKeepAlive), 1},
		{"max-subscriptions", int64(o.maxSubscriptions), 1},
		{"max-topic-bytes", int64(o.maxTopicBytes), 1},
		{"max-topics", int64(o.maxTopics), 1},
		{"message-burst", int64(o.messageBurst), 0},
		{"max-message-bytes", int64(o.maxMessageBytes), 1},
		{"max-queue-bytes", int64(o.maxQueueBytes), 1},
		{"max-publish-bytes", int64(o.maxPublishBytes), 1},
		{"max-header-bytes", int64(o.maxHeaderBytes), minHeaderBytes},
		{"compression-min-bytes", int64(o.compressMin), 1},
	} {
		if f.v < f.min {
			if f.min == 0 {
				return fmt.Errorf("--%s %d: must not be negative", f.name, f.v)
			}
			return fmt.Errorf("--%s %d: must be at least %d", f.name, f.v, f.min)
		}
	}
	for _, f := range []struct {
		name     string
		d        time.Duration
		positive bool // zero is not allowed either
	}{
		{"handshake-timeout", o.handshake, true},
		{"http-idle-timeout", o.httpIdle, true},
		{"shutdown-timeout", o.shutdown, false},
		{"history-age", o.historyAge, true},
		{"ping-interval", o.pingInterval, false},
		{"idle-timeout", o.idleTimeout, false},
		{"frame-timeout", o.frameTimeout, false},
		{"jwt-leeway", o.jwtLeeway, false},
	} {
		switch {
		case f.d < 0:
			return fmt.Errorf("--%s %s: must not be negative", f.name, f.d)
		case f.d == 0 && f.positive:
			return fmt.Errorf("--%s 0: must be positive", f.name)
		}
	}
	if o.maxMessageBytes > wsconn.MaxMessageLimit {
		return fmt.Errorf("--max-message-bytes %d: must be at most %d (2GiB-1)", o.maxMessageBytes, wsconn.MaxMessageLimit)
	}
	if o.messageRate < 0 {
		return fmt.Errorf("--max-message-rate %g: must not be negative (0: no limit)", o.messageRate)
	}
	if o.idleTimeout > 0 && o.pingInterval > 0 && o.idleTimeout <= o.pingInterval {
		return fmt.Errorf("--idle-timeout %s must be greater than --ping-interval %s, or a quiet client is closed before it is pinged", o.idleTimeout, o.pingInterval)
	}
	return nil
}
