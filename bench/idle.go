package bench

import (
	"context"
	"time"
)

// idle measures the server before and after n idle subscribers connect.
func (r *runner) idle(ctx context.Context, n int) (*IdleResult, *DialResult, error) {
	before, err := r.sample(ctx)
	if err != nil {
		return nil, nil, err
	}
	u0, err := r.usage(ctx)
	if err != nil {
		return nil, nil, err
	}
	d, err := r.dial(ctx, "subscriber", r.t.subPath, n)
	if err != nil {
		return nil, d, err
	}
	if before.Server.Connections >= 0 {
		if _, err := r.waitServerConns(ctx, func(c int64) bool { return c >= before.Server.Connections+d.Open }); err != nil {
			return nil, d, err
		}
	}
	if err := sleep(ctx, r.o.Settle); err != nil {
		return nil, d, err
	}
	settling := time.Now()
	after, settled, err := r.settledRSS(ctx)
	if err != nil {
		return nil, d, err
	}
	u1, err := r.usage(ctx)
	if err != nil {
		return nil, d, err
	}
	x := &IdleResult{Conns: d.Open, Before: before, After: after, Client: clientUsage(u0, u1),
		SettleSeconds: time.Since(settling).Seconds(), Settled: settled}
	x.PerConn = PerConn{
		RSSBytes:        perConn(before.Server.RSSBytes, after.Server.RSSBytes, d.Open),
		RSSAnonBytes:    perConn(before.Server.RSSAnonBytes, after.Server.RSSAnonBytes, d.Open),
		HeapBytes:       perConn(before.Server.HeapBytes, after.Server.HeapBytes, d.Open),
		FDs:             perConn(before.Server.OpenFDs, after.Server.OpenFDs, d.Open),
		Goroutines:      perConn(before.Server.Goroutines, after.Server.Goroutines, d.Open),
		KernelTCPBytes:  perConn(before.Kernel.TCPMemBytes, after.Kernel.TCPMemBytes, d.Open),
		KernelSockets:   perConn(before.Kernel.SocketsUsed, after.Kernel.SocketsUsed, d.Open),
		ClientRSSBytes:  float64(x.Client.MaxRSSBytes*int64(x.Client.Workers)) / float64(d.Open),
		ServerConnDelta: delta(before.Server.Connections, after.Server.Connections),
	}
	return x, d, nil
}
