package bench

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"
)

// fanout sends --repeat messages, one at a time, each to every open
// subscriber, and waits for each to arrive everywhere before the next.
func (r *runner) fanout(ctx context.Context) (*FanoutResult, error) {
	subs, err := r.reset(ctx, true)
	if err != nil {
		return nil, err
	}
	u0, err := r.usage(ctx)
	if err != nil {
		return nil, err
	}
	bar := r.newBar(int64(r.o.Repeat), "fanout messages")
	var published int64
	for range r.o.Repeat {
		if _, err := r.publish(ctx, broadcastData(time.Now().UnixNano(), r.o.PayloadBytes)); err != nil {
			bar.Done()
			return nil, err
		}
		published++
		if _, ok := r.waitDelivered(ctx, subs, published, time.Time{}); !ok {
			r.log.Warn("fanout: a message did not reach every subscriber", "seq_index", published)
		}
		bar.Set(published)
		if err := sleep(ctx, r.o.Interval); err != nil {
			bar.Done()
			return nil, err
		}
	}
	bar.Done()
	w, hist, err := r.collect(ctx, "collect", published)
	if err != nil {
		return nil, err
	}
	u1, err := r.usage(ctx)
	if err != nil {
		return nil, err
	}
	x := &FanoutResult{
		Accounting: accounting(subs, published, w),
		Latency:    latencyOf(hist, true),
		Client:     clientUsage(u0, u1),
	}
	x.LastReceipt = lastReceipt(w.LastLatency)
	return x, nil
}

// lastReceipt summarises the per-message latency of the last receipt.
func lastReceipt(m map[string]int64) LastReceipt {
	var lr LastReceipt
	type kv struct {
		seq uint64
		ns  int64
	}
	var all []kv
	for k, v := range m {
		var seq uint64
		if _, err := fmt.Sscan(k, &seq); err == nil {
			all = append(all, kv{seq, v})
		}
	}
	if len(all) == 0 {
		return LastReceipt{P50US: -1, MeanUS: -1, MaxUS: -1}
	}
	slices.SortFunc(all, func(a, b kv) int { return cmp.Compare(a.seq, b.seq) })
	sorted := make([]int64, len(all))
	var sum int64
	for i, e := range all {
		us := e.ns / 1000
		lr.EachUS = append(lr.EachUS, us)
		sorted[i] = us
		sum += us
	}
	slices.Sort(sorted)
	lr.P50US = sorted[(len(sorted)-1)/2]
	lr.MaxUS = sorted[len(sorted)-1]
	lr.MeanUS = float64(sum) / float64(len(sorted))
	return lr
}
