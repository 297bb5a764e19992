package bench

import (
	"context"
	"crypto/rand"
	"time"
)

// echo runs --duration of round trips on the open echo connections.
func (r *runner) echo(ctx context.Context, conns int) (*EchoResult, error) {
	if _, err := r.reset(ctx, false); err != nil {
		return nil, err
	}
	u0, err := r.usage(ctx)
	if err != nil {
		return nil, err
	}
	payload := make([]byte, r.o.Size)
	_, _ = rand.Read(payload)
	start := time.Now()
	if _, err := broadcastCall[struct{}](ctx, r.fleet, command{Op: "echo_start", Payload: payload}, 30*time.Second); err != nil {
		return nil, err
	}
	if err := r.timedBar(ctx, "echo (ms)", r.o.Duration); err != nil {
		return nil, err
	}
	w, hist, err := r.collect(ctx, "echo_stop", 0)
	if err != nil {
		return nil, err
	}
	secs := time.Since(start).Seconds()
	u1, err := r.usage(ctx)
	if err != nil {
		return nil, err
	}
	return &EchoResult{
		Concurrency: conns,
		Size:        r.o.Size,
		Seconds:     secs,
		RoundTrips:  w.Echoes,
		PerSecond:   float64(w.Echoes) / secs,
		Errors:      w.EchoErrors,
		Latency:     latencyOf(hist, true),
		Client:      clientUsage(u0, u1),
	}, nil
}
