package bench

import (
	"bytes"
	"cmp"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"slices"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// runner drives the scenarios: it holds the options, the resolved target,
// the fleet of workers and an HTTP client for /publish and /stats.
type runner struct {
	o      *Options
	t      target
	plan   fleetPlan
	fleet  *Fleet
	httpc  *http.Client
	log    *slog.Logger
	stderr io.Writer
	pid    int // server process; 0: unknown
	win    uint32

	creds       *credentials // of the clients; nil: none
	publishAuth string       // Authorization of a publish; empty: none
}

// newRunner resolves the target, plans the fleet for hold connections at
// once, checks the limits and starts the workers.
func newRunner(ctx context.Context, o *Options, stderr io.Writer, log *slog.Logger, hold int) (*runner, error) {
	t, err := resolveTarget(ctx, o)
	if err != nil {
		return nil, err
	}
	plan, err := planFleet(o, t, hold)
	if err != nil {
		return nil, err
	}
	r := &runner{o: o, t: t, plan: plan, log: log, stderr: stderr, httpc: newHTTPClient()}
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
	r.pid = r.findServerPID()
	if err := checkServerFiles(r.pid, hold); err != nil {
		return nil, err
	}
	r.fleet, err = startFleet(ctx, plan.Workers, o.ClientCPUs, stderr, log)
	if err != nil {
		return nil, err
	}
	return r, nil
}

// newHTTPClient returns the client that publishes and reads stats. It keeps
// as many connections alive as --publishers' default has in flight, and
// drops an idle one before fanout's --http-idle-timeout (30 s) would: a
// publish on a connection the server has just closed would fail.
func newHTTPClient() *http.Client {
	return &http.Client{Transport: &http.Transport{
		MaxIdleConns:        256,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     20 * time.Second,
		DisableCompression:  true,
	}}
}

// findServerPID returns --server-pid, or the process listening on a
// loopback target's port, or 0.
func (r *runner) findServerPID() int {
	switch {
	case r.o.ServerPID > 0:
		return r.o.ServerPID
	case r.o.ServerPID < 0 || !r.t.loopback:
		return 0
	}
	return findListenerPID(int(r.t.addr.Port()))
}

// close stops the workers.
func (r *runner) close() {
	if r.fleet != nil {
		r.fleet.Close()
	}
	r.httpc.CloseIdleConnections()
}

// sample reads the server's /stats, the kernel's socket accounting and the
// server's CPU time.
func (r *runner) sample(ctx context.Context) (Sample, error) {
	st, err := fetchServerStats(ctx, r.httpc, r.t.statsURL)
	if err != nil {
		return Sample{}, err
	}
	s := Sample{At: time.Now(), Server: st, Kernel: readSockStat(), ServerCPU: -1, MemoryFrom: "stats"}
	if r.pid > 0 {
		if cpu, err := processCPU(r.pid); err == nil {
			s.ServerCPU = cpu
		}
		if rss, anon, err := processMemory(r.pid); err == nil {
			s.Server.RSSBytes, s.Server.RSSAnonBytes, s.MemoryFrom = rss, anon, "proc"
		}
	}
	return s, nil
}

// settledRSS samples the server every second until its RSS changes by no
// more than 0.5% between two readings, or --timeout passes (settled is then
// false): the memory of every server is read once it has stopped moving,
// not while a collector or an allocator is still at work.
func (r *runner) settledRSS(ctx context.Context) (s Sample, settled bool, err error) {
	deadline := time.Now().Add(r.o.Timeout)
	prev, err := r.sample(ctx)
	if err != nil {
		return prev, false, err
	}
	for {
		if err := sleep(ctx, time.Second); err != nil {
			return prev, false, err
		}
		s, err := r.sample(ctx)
		if err != nil {
			return s, false, err
		}
		d := s.Server.RSSBytes - prev.Server.RSSBytes
		if d < 0 {
			d = -d
		}
		if float64(d) <= 0.005*float64(s.Server.RSSBytes) {
			return s, true, nil
		}
		if time.Now().After(deadline) {
			r.log.Warn("the server's RSS did not settle", "rss_bytes", s.Server.RSSBytes, "change_bytes", d)
			return s, false, nil
		}
		prev = s
	}
}

// usageMark is the workers' resource use at one moment.
type usageMark struct {
	at    time.Time
	usage []usageReply
}

func (r *runner) usage(ctx context.Context) (usageMark, error) {
	u, err := broadcastCall[usageReply](ctx, r.fleet, command{Op: "usage"}, 10*time.Second)
	return usageMark{at: time.Now(), usage: u}, err
}

// clientUsage is what the workers used between two marks.
func clientUsage(a, b usageMark) ClientUsage {
	c := ClientUsage{Workers: len(b.usage), WallSeconds: b.at.Sub(a.at).Seconds()}
	for i := range b.usage {
		d := b.usage[i].CPUSeconds
		if i < len(a.usage) {
			d -= a.usage[i].CPUSeconds
		}
		c.CPUSeconds += d
		if c.WallSeconds > 0 {
			c.MaxWorkerCores = max(c.MaxWorkerCores, d/c.WallSeconds)
		}
		c.MaxRSSBytes = max(c.MaxRSSBytes, b.usage[i].MaxRSSBytes)
	}
	if c.WallSeconds > 0 {
		c.Cores = c.CPUSeconds / c.WallSeconds
	}
	return c
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
	return &dialCommand{
		Kind:        kind,
		Target:      r.t.addr.String(),
		Host:        r.t.host,
		Path:        path,
		Sources:     src,
		N:           n,
		Concurrency: max(1, r.o.DialConcurrency/r.fleet.Size()),
		Timeout:     Duration(r.o.DialTimeout),
		Auth:        r.creds,
	}
}

// dial opens n connections of kind to path, spread over the workers, with
// a progress bar.
func (r *runner) dial(ctx context.Context, kind, path string, n int) (*DialResult, error) {
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
	start := time.Now()
	counts := r.split(n)
	replies := make([]dialReply, r.fleet.Size())
	err := r.fleet.each(func(i int, w *workerProc) error {
		cmd := command{Op: "dial", Dial: r.dialCommand(i, kind, path, counts[i])}
		return w.call(ctx, cmd, &replies[i], 0)
	})
	close(stop)
	<-done
	bar.Done()
	if err != nil {
		return nil, err
	}
	d := &DialResult{Requested: int64(n), Seconds: time.Since(start).Seconds(), Errors: map[string]int64{}}
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

// publishReply is the body of a publish response.
type publishReply struct {
	Seq uint64 `json:"seq"`
}

// publish posts data to the topic and returns its seq.
func (r *runner) publish(ctx context.Context, data []byte) (uint64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.t.publishURL, bytes.NewReader(data))
	if err != nil {
		return 0, fmt.Errorf("bench: publish: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if r.publishAuth != "" {
		req.Header.Set("Authorization", r.publishAuth)
	}
	resp, err := r.httpc.Do(req)
	if err != nil {
		return 0, fmt.Errorf("bench: publish: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if err != nil {
		return 0, fmt.Errorf("bench: publish: read response: %w", err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusAccepted {
		return 0, fmt.Errorf("bench: publish to %s: %s: %s", r.t.publishURL, resp.Status, truncate(body, 200))
	}
	var rep publishReply
	if err := json.Unmarshal(body, &rep); err != nil {
		return 0, fmt.Errorf("bench: publish: response %q: %w", truncate(body, 200), err)
	}
	return rep.Seq, nil
}

// delivered reports how far the window has come: receipts plus the
// deliveries that can no longer happen because their subscriber is gone.
func (r *runner) delivered(subs, published int64) (int64, progress) {
	p := r.fleet.progress(r.win)
	gone := max(0, subs-p.Open)
	return p.Receipts + gone*published, p
}

// waitDelivered waits until every subscriber has every published message,
// or --timeout passes without a receipt. It returns the time of the last
// receipt it saw and whether everything arrived.
func (r *runner) waitDelivered(ctx context.Context, subs, published int64) (time.Time, bool) {
	want := subs * published
	lastChange := time.Now()
	got, _ := r.delivered(subs, published)
	for got < want {
		if time.Since(lastChange) > r.o.Timeout || ctx.Err() != nil {
			return lastChange, false
		}
		r.fleet.wait(ctx, 50*time.Millisecond)
		if n, _ := r.delivered(subs, published); n != got {
			got, lastChange = n, time.Now()
		}
	}
	return lastChange, true
}

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
		if _, ok := r.waitDelivered(ctx, subs, published); !ok {
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
	last, complete := r.waitDelivered(ctx, subs, published)
	if !complete {
		r.log.Warn("throughput: not every message reached every subscriber", "timeout", r.o.Timeout)
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

// settleInterval is the pause between the samples that settledSample
// compares.
const settleInterval = 250 * time.Millisecond

// settledSample samples the server until two samples in a row,
// settleInterval apart, agree on its connections, open fds, goroutines, and
// hub clients and subscriptions, with the connections at most maxConns
// (unless it is negative) and, where the server tells, no connection but
// the /stats request itself that is not a WebSocket; or until --timeout
// passes. A server releases a closed connection's fd, goroutines and
// subscriptions a little after the client sees it close, and a plain-HTTP
// or half-done connection holds an fd too. With gc, each sample follows a
// garbage collection (see collectGarbage). It returns the last sample and
// whether the server settled.
func (r *runner) settledSample(ctx context.Context, gc bool, maxConns int64) (Sample, bool, error) {
	deadline := time.Now().Add(r.o.Timeout)
	var prev Sample
	for i := 0; ; i++ {
		if gc {
			r.collectGarbage(ctx)
		}
		s, err := r.sample(ctx)
		if err != nil {
			return s, false, err
		}
		p, n := prev.Server, s.Server
		others := n.AllConnections - n.Connections // plain HTTP and handshakes, this request included
		if i > 0 && (maxConns < 0 || n.Connections <= maxConns) && (n.AllConnections < 0 || others <= 1) &&
			p.Connections == n.Connections && p.OpenFDs == n.OpenFDs && p.Goroutines == n.Goroutines &&
			p.Clients == n.Clients && p.Subscriptions == n.Subscriptions {
			return s, true, nil
		}
		if time.Now().After(deadline) {
			r.log.Warn("server's figures did not settle", "connections", n.Connections, "open_fds", n.OpenFDs, "goroutines", n.Goroutines)
			return s, false, nil
		}
		prev = s
		if err := sleep(ctx, settleInterval); err != nil {
			return s, false, err
		}
	}
}

// collectGarbage asks the server for a garbage collection, through
// GET /debug/pprof/heap?gc=1 (Go's net/http/pprof, which fanout serves with
// --pprof), so that the heap it reports next is what is live rather than
// wherever the last collection left it. It reports whether the server did.
//
// The profile comes as text (debug=1): the default, gzipped form leaves
// about 1 MiB of compressor state behind as garbage, in the very heap that
// is read next; the text form leaves tens of KiB.
func (r *runner) collectGarbage(ctx context.Context) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+r.t.host+"/debug/pprof/heap?gc=1&debug=1", nil)
	if err != nil {
		return false
	}
	resp, err := r.httpc.Do(req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<20))
	return resp.StatusCode == http.StatusOK
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
