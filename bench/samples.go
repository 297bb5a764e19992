package bench

import (
	"context"
	"io"
	"net/http"
	"time"
)

// sample reads the servers' /stats, the kernel's socket accounting and the
// servers' CPU time. With several servers (a cluster's nodes) their
// figures are summed, and CPU time and memory are known only if they are
// for every one.
func (r *runner) sample(ctx context.Context) (Sample, error) {
	s := Sample{Kernel: readSockStat(), ServerCPU: r.serverCPU(), MemoryFrom: "stats"}
	proc := true
	for i, t := range r.ts {
		st, err := fetchServerStats(ctx, r.httpc, t.statsURL)
		if err != nil {
			return Sample{}, err
		}
		pid := r.pids[i]
		if rss, anon, err := processMemory(pid); pid > 0 && err == nil {
			st.RSSBytes, st.RSSAnonBytes = rss, anon
		} else {
			proc = false
		}
		if i == 0 {
			s.Server = st
		} else {
			s.Server.add(st)
		}
	}
	s.At = time.Now()
	if proc {
		s.MemoryFrom = "proc"
	}
	return s, nil
}

// serverCPU returns the CPU time the servers have used since they started,
// summed, in seconds; -1 unless it is known for every one.
func (r *runner) serverCPU() float64 {
	cpu := 0.0
	for _, pid := range r.pids {
		c, err := processCPU(pid)
		if pid <= 0 || err != nil {
			return -1
		}
		cpu += c
	}
	return cpu
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
	ok := true
	for _, t := range r.ts {
		ok = r.collectGarbageOf(ctx, t) && ok
	}
	return ok
}

func (r *runner) collectGarbageOf(ctx context.Context, t target) bool {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+t.host+"/debug/pprof/heap?gc=1&debug=1", nil)
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

// settleInterval is the pause between the samples that settledSample
// compares.
const settleInterval = 250 * time.Millisecond
