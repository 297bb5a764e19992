package bench

import (
	"context"
	"fmt"
	"time"
)

// churn cycles --c connection slots for --duration, or until --cycles
// cycles are done: connect, subscribe (in the URL), close. The server is
// sampled once settled, before the first cycle and after the last.
func (r *runner) churn(ctx context.Context) (*ChurnResult, error) {
	gc := r.collectGarbage(ctx) // and whether the server can
	before, _, err := r.settledSample(ctx, gc, -1)
	if err != nil {
		return nil, err
	}
	if _, err := r.reset(ctx, false); err != nil {
		return nil, err
	}
	u0, err := r.usage(ctx)
	if err != nil {
		return nil, err
	}
	slots := r.split(r.o.Concurrency)
	quotas := shareOut(r.o.Cycles, slots)
	start := time.Now()
	replies := make([]windowCounts, r.fleet.Size())
	barDone := make(chan error, 1)
	bctx, cancel := context.WithCancel(ctx)
	if r.o.Cycles > 0 {
		go func() { barDone <- r.cyclesBar(bctx, "churn cycles", r.o.Cycles) }()
	} else {
		go func() { barDone <- r.timedBar(bctx, "churn (ms)", r.o.Duration) }()
	}
	err = r.fleet.each(func(i int, w *workerProc) error {
		if slots[i] == 0 || (r.o.Cycles > 0 && quotas[i] == 0) {
			return nil
		}
		cmd := command{Op: "churn", Dial: r.dialCommand(i, "churn", r.t.subPath, 0), Concurrency: slots[i], Duration: Duration(r.o.Duration)}
		timeout := r.o.Duration + r.o.DialTimeout + closeTimeout + 30*time.Second
		if r.o.Cycles > 0 {
			// The run takes as long as its cycles take, so the parent sets
			// no bound: the worker gives up by itself after --timeout
			// without a completed cycle.
			cmd.Cycles, cmd.Stall, timeout = quotas[i], Duration(r.o.Timeout), 0
		}
		return w.call(ctx, cmd, &replies[i], timeout)
	})
	cancel()
	<-barDone
	if err != nil {
		return nil, err
	}
	end := time.Now()
	secs := end.Sub(start).Seconds()
	u1, err := r.usage(ctx)
	if err != nil {
		return nil, err
	}
	x := &ChurnResult{
		Concurrency: r.o.Concurrency, Requested: r.o.Cycles, Seconds: secs, Errors: map[string]int64{},
		Before: before, HeapAfterGC: gc, Client: clientUsage(u0, u1),
	}
	for _, w := range replies {
		x.Cycles += w.Cycles
		x.Failed += w.ChurnFailed
		for k, v := range w.Errors {
			x.Errors[k] += v
		}
	}
	x.PerSecond = float64(x.Cycles) / secs
	if before.Server.Connections >= 0 {
		if _, err := r.waitServerConns(ctx, func(n int64) bool { return n <= before.Server.Connections }); err != nil {
			return nil, err
		}
	}
	if err := sleep(ctx, r.o.Settle); err != nil {
		return nil, err
	}
	if x.After, x.Settled, err = r.settledSample(ctx, gc, before.Server.Connections); err != nil {
		return nil, err
	}
	x.SettleSeconds = time.Since(end).Seconds()
	b, a := before.Server, x.After.Server
	x.Delta = ChurnDelta{
		Connections:   delta(b.Connections, a.Connections),
		FDs:           delta(b.OpenFDs, a.OpenFDs),
		Goroutines:    delta(b.Goroutines, a.Goroutines),
		Clients:       delta(b.Clients, a.Clients),
		Subscriptions: delta(b.Subscriptions, a.Subscriptions),
		HeapBytes:     delta(b.HeapBytes, a.HeapBytes),
		RSSBytes:      delta(b.RSSBytes, a.RSSBytes),
		RSSAnonBytes:  delta(b.RSSAnonBytes, a.RSSAnonBytes),
	}
	if r.o.Cycles > 0 && x.Cycles < r.o.Cycles {
		return x, fmt.Errorf("bench: churn: %d of %d cycles done; the workers gave up after --timeout (%v) without one", x.Cycles, r.o.Cycles, r.o.Timeout)
	}
	return x, nil
}

// shareOut divides n in proportion to weights; the remainder goes one by
// one to the first that have a weight.
func shareOut(n int64, weights []int) []int64 {
	out := make([]int64, len(weights))
	var total int64
	for _, w := range weights {
		total += int64(w)
	}
	if total <= 0 || n <= 0 {
		return out
	}
	var given int64
	for i, w := range weights {
		out[i] = n * int64(w) / total
		given += out[i]
	}
	for i := 0; given < n; i = (i + 1) % len(weights) {
		if weights[i] > 0 {
			out[i]++
			given++
		}
	}
	return out
}
