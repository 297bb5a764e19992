package bench

import (
	"context"
	"fmt"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// reset starts a measurement window on every worker and returns the
// connections open as it starts.
func (r *runner) reset(ctx context.Context, track bool) (int64, error) {
	reps, err := broadcastCall[resetReply](ctx, r.fleet, command{Op: "reset", Track: track}, 10*time.Second)
	if err != nil {
		return 0, err
	}
	var open int64
	for _, rep := range reps {
		open += rep.Open
		r.win = rep.Win
	}
	return open, nil
}

// collect gathers the window's counts from every worker and merges them.
func (r *runner) collect(ctx context.Context, op string, expected int64) (merged windowCounts, hist *hdrhistogram.Histogram, err error) {
	reps, err := broadcastCall[windowCounts](ctx, r.fleet, command{Op: op, Expected: expected}, 30*time.Second)
	if err != nil {
		return merged, nil, err
	}
	hist = newHistogram()
	merged = windowCounts{CloseCodes: map[string]int64{}, Errors: map[string]int64{}, LastLatency: map[string]int64{}}
	for _, w := range reps {
		merged.Live += w.Live
		merged.LiveRecv += w.LiveRecv
		merged.LiveShort += w.LiveShort
		merged.Closed += w.Closed
		merged.ClosedRecv += w.ClosedRecv
		merged.Receipts += w.Receipts
		merged.Controls += w.Controls
		merged.Duplicates += w.Duplicates
		merged.Echoes += w.Echoes
		merged.EchoErrors += w.EchoErrors
		merged.Cycles += w.Cycles
		merged.ChurnFailed += w.ChurnFailed
		merged.OpenNow += w.OpenNow
		for k, v := range w.CloseCodes {
			merged.CloseCodes[k] += v
		}
		for k, v := range w.Errors {
			merged.Errors[k] += v
		}
		for k, v := range w.LastLatency {
			merged.LastLatency[k] = max(merged.LastLatency[k], v)
		}
		if len(w.Histogram) > 0 {
			h, err := hdrhistogram.Decode(w.Histogram)
			if err != nil {
				return merged, nil, fmt.Errorf("bench: decode a worker's histogram: %w", err)
			}
			hist.Merge(h)
		}
	}
	return merged, hist, nil
}

// accounting turns a window's counts into the delivery accounting.
func accounting(subs, messages int64, w windowCounts) Accounting {
	return Accounting{
		Subscribers:      subs,
		Messages:         messages,
		Expected:         subs * messages,
		Receipts:         w.LiveRecv + w.ClosedRecv,
		Drops:            w.LiveShort,
		LostToDisconnect: max(0, w.Closed*messages-w.ClosedRecv),
		Disconnects:      w.Closed,
		CloseCodes:       w.CloseCodes,
		Duplicates:       w.Duplicates,
	}
}

// delivered reports how far the window has come: receipts plus the
// deliveries that can no longer happen because their subscriber is gone.
func (r *runner) delivered(subs, published int64) (int64, progress) {
	p := r.fleet.progress(r.win)
	gone := max(0, subs-p.Open)
	return p.Receipts + gone*published, p
}

// waitDelivered waits until every subscriber has every published message,
// or --timeout passes without a receipt, or the deadline, unless it is
// zero: a server far behind the offered rate still delivers, and a compare
// would wait for it for many minutes. It returns the time of the last
// receipt it saw and whether everything arrived.
func (r *runner) waitDelivered(ctx context.Context, subs, published int64, deadline time.Time) (time.Time, bool) {
	want := subs * published
	lastChange := time.Now()
	got, _ := r.delivered(subs, published)
	for got < want {
		if time.Since(lastChange) > r.o.Timeout || ctx.Err() != nil || !deadline.IsZero() && time.Now().After(deadline) {
			return lastChange, false
		}
		r.fleet.wait(ctx, 50*time.Millisecond)
		if n, _ := r.delivered(subs, published); n != got {
			got, lastChange = n, time.Now()
		}
	}
	return lastChange, true
}
