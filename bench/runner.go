package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"sync/atomic"
	"time"
)

// runner drives the scenarios: it holds the options, the resolved target,
// the fleet of workers and an HTTP client for /publish and /stats.
type runner struct {
	o      *Options
	t      target   // the first of ts: the one server, unless --url names several
	ts     []target // every server
	plan   fleetPlan
	fleet  *Fleet
	httpc  *http.Client
	log    *slog.Logger
	stderr io.Writer
	pid    int           // server process (of t); 0: unknown
	pids   []int         // of ts
	pubs   atomic.Uint64 // publishes, to spread them over ts
	win    uint32

	creds       *credentials // of the clients; nil: none
	publishAuth string       // Authorization of a publish; empty: none
}

// newRunner resolves the target, plans the fleet for hold connections at
// once, checks the limits and starts the workers.
func newRunner(ctx context.Context, o *Options, stderr io.Writer, log *slog.Logger, hold int) (*runner, error) {
	ts, err := resolveTargets(ctx, o)
	if err != nil {
		return nil, err
	}
	plan, err := planFleet(o, ts[0], hold)
	if err != nil {
		return nil, err
	}
	r := &runner{o: o, t: ts[0], ts: ts, plan: plan, log: log, stderr: stderr, httpc: newHTTPClient()}
	if r.creds, err = newCredentials(o.Token, o.JWTSecret, o.Topic); err != nil {
		return nil, err
	}
	if r.creds != nil {
		token, err := r.creds.token(fmt.Sprintf("bench-%d-publisher", os.Getpid()), time.Now())
		if err != nil {
			return nil, err
		}
		r.publishAuth = "Bearer " + token
	}
	r.pid = r.findServerPID(r.t)
	r.pids = []int{r.pid}
	for _, t := range ts[1:] {
		r.pids = append(r.pids, r.findServerPID(t))
	}
	for _, pid := range r.pids {
		if err := checkServerFiles(pid, (hold+len(ts)-1)/len(ts)); err != nil {
			return nil, err
		}
	}
	r.fleet, err = startFleet(ctx, plan.Workers, o.ClientCPUs, stderr, log)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// findServerPID returns --server-pid, or the process listening on a
// loopback target's port, or 0.
func (r *runner) findServerPID(t target) int {
	switch {
	case r.o.ServerPID > 0:
		return r.o.ServerPID
	case r.o.ServerPID < 0 || !t.loopback:
		return 0
	}
	return findListenerPID(int(t.addr.Port()))
}

// close stops the workers.
func (r *runner) close() {
	if r.fleet != nil {
		r.fleet.Close()
	}
	r.httpc.CloseIdleConnections()
}

// split divides n over the workers, the first ones taking the remainder.
func (r *runner) split(n int) []int {
	k := r.fleet.Size()
	out := make([]int, k)
	for i := range out {
		out[i] = n / k
		if i < n%k {
			out[i]++
		}
	}
	return out
}

// dialCommand builds worker i's dial command for n connections of kind.
func (r *runner) dialCommand(i int, kind, path string, n int) *dialCommand {
	src := r.plan.Sources
	if len(src) > 1 {
		// Each worker starts at a different address, so that the
		// addresses are used evenly.
		k := i * len(src) / r.fleet.Size()
		src = append(slices.Clone(src[k:]), src[:k]...)
	}
	targets := make([]dialTarget, len(r.ts))
	for j := range r.ts {
		// Each worker starts at a different server, so that with fewer
		// connections than servers they still spread.
		t := r.ts[(i+j)%len(r.ts)]
		targets[j] = dialTarget{Addr: t.addr.String(), Host: t.host}
	}
	return &dialCommand{
		Kind:        kind,
		Targets:     targets,
		Path:        path,
		Sources:     src,
		N:           n,
		Concurrency: max(1, r.o.DialConcurrency/r.fleet.Size()),
		Timeout:     Duration(r.o.DialTimeout),
		Auth:        r.creds,
		Offer:       r.offer(),
	}
}

// deflateOffer is the permessage-deflate offer of --compression.
const deflateOffer = "permessage-deflate; client_no_context_takeover; server_no_context_takeover"

// offer returns the Sec-WebSocket-Extensions every upgrade carries.
func (r *runner) offer() string {
	if r.o.Compression {
		return deflateOffer
	}
	return ""
}

// dial opens n connections of kind to path, spread over the workers, with
// a progress bar.
func (r *runner) dial(ctx context.Context, kind, path string, n int) (*DialResult, error) {
	u0, err := r.usage(ctx)
	if err != nil {
		return nil, err
	}
	win := r.win
	p0 := r.fleet.progress(win)
	bar := r.newBar(int64(n), "connecting "+kind+"s")
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			default:
			}
			p := r.fleet.progress(win)
			bar.Set(p.Open - p0.Open + p.DialFails - p0.DialFails)
			r.fleet.wait(ctx, 100*time.Millisecond)
		}
	}()
	cpu0 := r.serverCPU()
	start := time.Now()
	counts := r.split(n)
	replies := make([]dialReply, r.fleet.Size())
	err = r.fleet.each(func(i int, w *workerProc) error {
		cmd := command{Op: "dial", Dial: r.dialCommand(i, kind, path, counts[i])}
		return w.call(ctx, cmd, &replies[i], 0)
	})
	seconds := time.Since(start).Seconds()
	cpu1 := r.serverCPU()
	var u1 usageMark
	if err == nil {
		u1, err = r.usage(ctx)
	}
	close(stop)
	<-done
	bar.Done()
	if err != nil {
		return nil, err
	}
	d := &DialResult{Requested: int64(n), Seconds: seconds, Errors: map[string]int64{},
		ServerCPUSeconds: -1, Client: clientUsage(u0, u1)}
	if cpu0 >= 0 && cpu1 >= 0 {
		d.ServerCPUSeconds = cpu1 - cpu0
	}
	for _, rep := range replies {
		d.Open += rep.OK
		d.Failed += rep.Failed
		for k, v := range rep.Errors {
			d.Errors[k] += v
		}
	}
	if d.Seconds > 0 {
		d.PerSecond = float64(d.Open) / d.Seconds
	}
	if d.Failed > 0 {
		r.log.Warn("some connections failed", "failed", d.Failed, "open", d.Open, "errors", fmtErrors(d.Errors))
	}
	if d.Open == 0 {
		return d, fmt.Errorf("bench: no %s connection could be opened to %s%s", kind, r.t.host, fmtErrors(d.Errors))
	}
	return d, nil
}

// closeAll closes the workers' connections of kind and waits for the
// server to count them gone.
func (r *runner) closeAll(ctx context.Context, kind string, serverBefore int64) error {
	if _, err := broadcastCall[closeReply](ctx, r.fleet, command{Op: "close", Kind: kind}, closeTimeout+10*time.Second); err != nil {
		return err
	}
	if serverBefore >= 0 {
		r.waitServerConns(ctx, func(n int64) bool { return n <= serverBefore })
	}
	return nil
}

// waitServerConns polls the server's connection count until ok accepts it
// or it has not changed for --timeout. It returns the last sample.
func (r *runner) waitServerConns(ctx context.Context, ok func(int64) bool) (Sample, error) {
	var last int64 = -2
	changed := time.Now()
	for {
		s, err := r.sample(ctx)
		if err != nil {
			return s, err
		}
		n := s.Server.Connections
		if n < 0 || ok(n) {
			return s, nil
		}
		if n != last {
			last, changed = n, time.Now()
		}
		if time.Since(changed) > r.o.Timeout {
			r.log.Warn("server's connection count did not settle", "connections", n)
			return s, nil
		}
		select {
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
			return s, ctx.Err()
		}
	}
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errInterrupted is returned when the run was cut short by a signal.
var errInterrupted = errors.New("bench: interrupted")
