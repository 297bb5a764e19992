package bench

import (
	"context"
	"fmt"
	"time"
)

// throughput publishes for --duration: closed loop, with at most --window
// messages not yet received everywhere, when rate is 0; otherwise open loop
// at rate messages per second (see openLoop).
func (r *runner) throughput(ctx context.Context, rate float64) (*ThroughputResult, error) {
	subs, err := r.reset(ctx, false)
	if err != nil {
		return nil, err
	}
	u0, err := r.usage(ctx)
	if err != nil {
		return nil, err
	}
	s0, err := r.sample(ctx)
	if err != nil {
		return nil, err
	}
	label := "throughput (ms)"
	if rate > 0 {
		label = fmt.Sprintf("throughput at %g/s (ms)", rate)
	}
	bar := r.newBar(r.o.Duration.Milliseconds(), label)
	start := time.Now()
	end := start.Add(r.o.Duration)
	var loop openLoopOutcome
	if rate > 0 {
		loop, err = r.openLoop(ctx, rate, start, end, bar)
	} else {
		loop, err = r.closedLoop(ctx, subs, start, end, bar)
	}
	bar.Done()
	if err != nil {
		return nil, err
	}
	published := loop.published
	ended := end
	if loop.end.After(ended) {
		ended = loop.end // a publisher behind the rate went on past --duration
	}
	last, complete := r.waitDelivered(ctx, subs, published, ended.Add(r.o.CatchUp))
	if !complete {
		r.log.Warn("throughput: not every message reached every subscriber", "timeout", r.o.Timeout, "catch_up", r.o.CatchUp)
	}
	s1, err := r.sample(ctx)
	if err != nil {
		return nil, err
	}
	w, hist, err := r.collect(ctx, "collect", published)
	if err != nil {
		return nil, err
	}
	u1, err := r.usage(ctx)
	if err != nil {
		return nil, err
	}
	x := &ThroughputResult{
		Accounting:            accounting(subs, published, w),
		OfferedRate:           rate,
		Publishers:            loop.publishers,
		Late:                  loop.late,
		PublishErrors:         loop.failed,
		PublishSeconds:        max(loop.end.Sub(start), r.o.Duration).Seconds(),
		Seconds:               last.Sub(start).Seconds(),
		ServerCPUSeconds:      -1,
		ServerCPUPerMillion:   -1,
		ServerDrops:           delta(s0.Server.Drops, s1.Server.Drops),
		ServerSlowDisconnects: delta(s0.Server.SlowDisconnects, s1.Server.SlowDisconnects),
		Latency:               latencyOf(hist, true),
		Client:                clientUsage(u0, u1),
	}
	if x.PublishSeconds > 0 {
		x.PublishRate = float64(published) / x.PublishSeconds
	}
	if rate > 0 {
		x.MissedRate = loop.failed > 0 || x.PublishRate < 0.97*rate
	}
	if x.Seconds > 0 {
		x.DeliveriesPerSecond = float64(x.Receipts) / x.Seconds
	}
	if s0.ServerCPU >= 0 && s1.ServerCPU >= 0 {
		x.ServerCPUSeconds = s1.ServerCPU - s0.ServerCPU
		if x.Receipts > 0 {
			x.ServerCPUPerMillion = x.ServerCPUSeconds / float64(x.Receipts) * 1e6
		}
	}
	return x, nil
}

// closedLoop publishes from start until end, one message at a time, with at
// most --window messages not yet received by all subs subscribers.
func (r *runner) closedLoop(ctx context.Context, subs int64, start, end time.Time, bar *bar) (openLoopOutcome, error) {
	out := openLoopOutcome{publishers: 1}
	for now := time.Now(); now.Before(end); now = time.Now() {
		if ctx.Err() != nil {
			return out, ctx.Err()
		}
		bar.Set(now.Sub(start).Milliseconds())
		got, _ := r.delivered(subs, out.published)
		if out.published*subs-got >= int64(r.o.Window)*subs {
			r.fleet.wait(ctx, 20*time.Millisecond)
			continue
		}
		if _, err := r.publish(ctx, broadcastData(time.Now().UnixNano(), r.o.PayloadBytes)); err != nil {
			return out, err
		}
		out.published++
	}
	out.end = time.Now()
	return out, nil
}
