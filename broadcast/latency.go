package broadcast

import (
	"sync/atomic"
	"time"
)

// LatencyBounds are the upper bounds, in seconds, of the buckets of the
// fan-out latency histogram (see Hub.FanoutLatency).
var LatencyBounds = [...]float64{50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 2.5e-3, 5e-3, 10e-3, 25e-3, 50e-3, 100e-3, 250e-3, 500e-3, 1, 2.5}

// latencyHistogram counts durations in the buckets of LatencyBounds with
// atomics: observing takes no lock and allocates nothing.
type latencyHistogram struct {
	counts [len(LatencyBounds) + 1]atomic.Uint64 // per bucket; the last is +Inf
	sumNs  atomic.Uint64
}

func (l *latencyHistogram) observe(d time.Duration) {
	s := d.Seconds()
	i := 0
	for i < len(LatencyBounds) && s > LatencyBounds[i] {
		i++
	}
	l.counts[i].Add(1)
	l.sumNs.Add(uint64(max(d, 0)))
}

// fanoutTimer follows one publish through the shards it is posted to: the
// last of them to queue it observes the latency.
type fanoutTimer struct {
	at   time.Duration // since Hub.started, when the publish began
	left atomic.Int32  // shards still to queue it
}

// done is called by each shard once it has queued the message to all its
// subscribers.
func (ft *fanoutTimer) done(h *Hub) {
	if ft.left.Add(-1) == 0 {
		h.latency.observe(time.Since(h.started) - ft.at)
	}
}

// FanoutLatency returns the histogram of the time from a publish until the
// last shard that holds subscribers of its topic has queued it to all of
// them: counts per bucket of LatencyBounds, cumulative, as Prometheus wants
// them, with the count of all observations and their sum in seconds.
// Publishes to topics without subscribers are not observed.
func (h *Hub) FanoutLatency() (cumulative []uint64, count uint64, sum float64) {
	cumulative = make([]uint64, len(LatencyBounds))
	for i := range LatencyBounds {
		count += h.latency.counts[i].Load()
		cumulative[i] = count
	}
	count += h.latency.counts[len(LatencyBounds)].Load()
	return cumulative, count, time.Duration(h.latency.sumNs.Load()).Seconds()
}
