package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/fanout/fanout/wsconn"
)

// afterStorms decides when the memory a storm of connections left behind
// is handed back to the OS. A storm (every client reconnecting after a
// deploy, a wave of closes) leaves garbage: handshake strings, grown maps
// and lists, the state of closed connections. Go collects it only when the
// heap next reaches its goal, or after two minutes, and returns freed pages
// slowly; a server that then sits idle holds it all. After 15,000
// subscribers connected, that was 50–70 B of RSS per connection.
//
// A storm is at least stormMinChurn connections opened or closed, and at
// least an eighth of the connections held; it is over once two ticks in a row saw
// next to none. Then, at most once per releaseEvery, the memory is
// collected and returned (debug.FreeOSMemory). Steady churn is never
// quiet and is left to the runtime.
//
// An afterStorms is used by one goroutine.
type afterStorms struct {
	last    time.Time // the latest release
	churn   uint64    // opened and closed at the previous tick
	pending uint64    // opened and closed since the latest release
	quiet   int       // ticks in a row with next to no churn
}

const (
	stormMinChurn = 1000
	quietTicks    = 2
	releaseEvery  = time.Minute
	// forgetTicks: quiet ticks after which the churn pending is
	// forgotten; more than releaseEvery's worth of ticks, so that a storm
	// waiting for the minute is not, and at most 10 a tick adds up to
	// less than stormMinChurn.
	forgetTicks = 90
)

// tick takes, once a period, the connections opened and closed since the
// start (a count that only grows) and those held now, and reports whether
// to release now.
func (a *afterStorms) tick(now time.Time, churn uint64, held int64) bool {
	var d uint64
	if churn > a.churn { // counters read one by one may step back a little
		d = churn - a.churn
		a.churn = churn
	}
	a.pending += d
	if d > max(10, uint64(held)/1000) {
		a.quiet = 0
		return false
	}
	a.quiet++
	if a.quiet > forgetTicks {
		// A trickle is no storm: what it added up over a long quiet is
		// forgotten, or it would reach stormMinChurn in the end.
		a.pending = 0
	}
	if a.quiet < quietTicks || a.pending < max(stormMinChurn, uint64(held)/8) || now.Sub(a.last) < releaseEvery {
		return false
	}
	a.last, a.pending = now, 0
	return true
}

// churn is the connections opened and closed since the server started.
func churn(s wsconn.Stats) uint64 {
	return 2*s.Accepted - uint64(s.Connections)
}

// releaseAfterStorms runs afterStorms on a server's counts every period (a
// second in fanout serve) until ctx is done, calling release
// (debug.FreeOSMemory) on its own goroutine.
func releaseAfterStorms(ctx context.Context, period time.Duration, stats func() wsconn.Stats, release func(), log *slog.Logger) {
	t := time.NewTicker(period)
	defer t.Stop()
	var a afterStorms
	a.churn = churn(stats())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s := stats()
			if a.tick(now, churn(s), s.Connections) {
				start := time.Now()
				release()
				log.Debug("memory returned after a storm of connections", "connections", s.Connections, "took", time.Since(start))
			}
		}
	}
}

// freeOSMemory is the release that fanout serve uses.
func freeOSMemory() { debug.FreeOSMemory() }
