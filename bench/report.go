package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// Report is the outcome of one run of "fanout bench": the parameters, the
// fleet, and one result per scenario that ran. It is what --json writes.
// Figures that could not be measured are -1.
type Report struct {
	Scenario string      `json:"scenario"`
	URL      string      `json:"url"`
	Started  time.Time   `json:"started"`
	Seconds  float64     `json:"seconds"`
	Params   Params      `json:"params"`
	Server   ServerInfo  `json:"server"`
	Fleet    fleetPlan   `json:"fleet"`
	Dial     *DialResult `json:"dial,omitempty"`

	Idle       *IdleResult         `json:"idle,omitempty"`
	Fanout     *FanoutResult       `json:"fanout,omitempty"`
	Throughput *ThroughputResult   `json:"throughput,omitempty"` // closed loop
	Rates      []*ThroughputResult `json:"rates,omitempty"`      // open loop, one per --rate
	Echo       *EchoResult         `json:"echo,omitempty"`
	Churn      *ChurnResult        `json:"churn,omitempty"`
}

// Params are the options that shape the load.
type Params struct {
	Conns        int       `json:"n"`
	Repeat       int       `json:"repeat"`
	Duration     float64   `json:"duration_s"`
	Rates        []float64 `json:"rates,omitempty"`
	ServerCPUs   []int     `json:"server_cpus,omitempty"` // compare: the CPUs the servers ran on
	ClientCPUs   []int     `json:"client_cpus,omitempty"` // the CPUs the client workers ran on
	Window       int       `json:"window"`
	PayloadBytes int       `json:"payload_bytes"`
	Concurrency  int       `json:"c"`
	Cycles       int64     `json:"cycles,omitempty"`
	Size         int       `json:"size"`
	Topic        string    `json:"topic"`
	Compression  bool      `json:"compression,omitempty"` // permessage-deflate offered
}

// ServerInfo says which server was measured.
type ServerInfo struct {
	Name string `json:"name,omitempty"`
	PID  int    `json:"pid"` // 0: unknown, so no server CPU figures
}

// DialResult is the ramp-up of the subscriber connections.
type DialResult struct {
	Requested int64            `json:"requested"`
	Open      int64            `json:"open"`
	Failed    int64            `json:"failed"`
	Seconds   float64          `json:"seconds"`
	PerSecond float64          `json:"per_second"`
	Errors    map[string]int64 `json:"errors,omitempty"`
	// ServerCPUSeconds is the CPU time the server used during the ramp-up
	// (-1: unknown), and Client what the client workers used: together
	// they say which side set the rate. A side near a whole core per core
	// it was given was the limit.
	ServerCPUSeconds float64     `json:"server_cpu_s"`
	Client           ClientUsage `json:"client"`
}

// ServerMicrosPerConn is the server's CPU time per connection opened
// during the ramp-up, in microseconds; -1 when unknown.
func (d *DialResult) ServerMicrosPerConn() float64 {
	if d.ServerCPUSeconds < 0 || d.Open == 0 {
		return -1
	}
	return d.ServerCPUSeconds * 1e6 / float64(d.Open)
}

// ClientUsage is what the client worker processes used during a phase, so
// that a reader can check the client was not the bottleneck.
type ClientUsage struct {
	Workers        int     `json:"workers"`
	CPUSeconds     float64 `json:"cpu_s"`
	WallSeconds    float64 `json:"wall_s"`
	Cores          float64 `json:"cores"`            // CPU seconds per wall second, all workers
	MaxWorkerCores float64 `json:"max_worker_cores"` // the busiest worker's
	MaxRSSBytes    int64   `json:"max_rss_bytes"`    // the largest worker's peak RSS
}

// Sample is the server's and the kernel's state at one moment.
type Sample struct {
	At        time.Time   `json:"at"`
	Server    ServerStats `json:"server"`
	Kernel    SockStat    `json:"kernel"`
	ServerCPU float64     `json:"server_cpu_s"` // since the server started; -1: unknown
	// MemoryFrom says where Server.RSSBytes and RSSAnonBytes come from:
	// "proc" (/proc/PID/status, when the server's pid is known: the same
	// reading for every server) or "stats" (its own /stats).
	MemoryFrom string `json:"memory_from"`
}

// Latency is a latency distribution, in microseconds.
type Latency struct {
	Count  int64      `json:"count"`
	MeanUS float64    `json:"mean_us"`
	P50US  int64      `json:"p50_us"`
	P90US  int64      `json:"p90_us"`
	P99US  int64      `json:"p99_us"`
	P999US int64      `json:"p999_us"`
	MaxUS  int64      `json:"max_us"`
	CDF    []CDFPoint `json:"cdf,omitempty"`
}

// CDFPoint is a point of a cumulative distribution: the fraction Q of
// values at or below US microseconds.
type CDFPoint struct {
	Q  float64 `json:"q"`
	US int64   `json:"us"`
}

// cdfQuantiles are the percentiles at which a Latency's CDF is sampled:
// every percent, then finer towards the tail.
var cdfQuantiles = func() []float64 {
	var qs []float64
	for q := 0; q < 99; q++ {
		qs = append(qs, float64(q))
	}
	return append(qs, 99, 99.25, 99.5, 99.75, 99.9, 99.95, 99.99, 99.999, 100)
}()

// latencyOf summarises a histogram of microseconds; withCDF adds its
// cumulative distribution.
func latencyOf(h *hdrhistogram.Histogram, withCDF bool) Latency {
	l := Latency{
		Count:  h.TotalCount(),
		MeanUS: h.Mean(),
		P50US:  h.ValueAtPercentile(50),
		P90US:  h.ValueAtPercentile(90),
		P99US:  h.ValueAtPercentile(99),
		P999US: h.ValueAtPercentile(99.9),
		MaxUS:  h.Max(),
	}
	if withCDF && l.Count > 0 {
		for _, q := range cdfQuantiles {
			p := CDFPoint{Q: q / 100, US: h.ValueAtPercentile(q)}
			if q == 0 {
				p.US = h.Min()
			}
			if n := len(l.CDF); n > 0 && l.CDF[n-1].US == p.US {
				l.CDF[n-1] = p // keep the highest quantile of a value
				continue
			}
			l.CDF = append(l.CDF, p)
		}
	}
	return l
}

// Accounting says where every expected delivery went: each subscriber
// open when the phase began should receive each message published, so
// Expected = Subscribers × Messages = Receipts + Drops + LostToDisconnect.
type Accounting struct {
	Subscribers      int64            `json:"subscribers"`
	Messages         int64            `json:"messages"`
	Expected         int64            `json:"expected"`
	Receipts         int64            `json:"receipts"`
	Drops            int64            `json:"drops"`              // missing on connections still open: seq gaps and messages that never came
	LostToDisconnect int64            `json:"lost_to_disconnect"` // missing on connections the server closed
	Disconnects      int64            `json:"disconnects"`        // connections released during the phase
	CloseCodes       map[string]int64 `json:"close_codes,omitempty"`
	Duplicates       int64            `json:"duplicates"` // seq at or below the last one seen (not counted as receipts)
}

// Balanced reports whether every expected delivery is accounted for.
func (a Accounting) Balanced() bool {
	return a.Receipts+a.Drops+a.LostToDisconnect == a.Expected
}

// IdleResult is the idle scenario: memory and resources per idle
// subscribed connection.
type IdleResult struct {
	Conns int64 `json:"conns"`
	// SettleSeconds is how long after --settle the server's RSS took to
	// settle (two readings a second apart within 0.5%); Settled is false
	// when it was still changing after --timeout.
	SettleSeconds float64     `json:"settle_s"`
	Settled       bool        `json:"settled"`
	Before        Sample      `json:"before"`
	After         Sample      `json:"after"`
	PerConn       PerConn     `json:"per_conn"`
	Client        ClientUsage `json:"client"`
}

// PerConn are the idle scenario's differences divided by the connections.
type PerConn struct {
	RSSBytes        float64 `json:"rss_bytes"`
	RSSAnonBytes    float64 `json:"rss_anon_bytes"` // anonymous RSS: the binary's pages paged in meanwhile left out
	HeapBytes       float64 `json:"go_heap_bytes"`
	FDs             float64 `json:"fds"`
	Goroutines      float64 `json:"goroutines"`
	KernelTCPBytes  float64 `json:"kernel_tcp_bytes"`  // both ends on loopback
	ClientRSSBytes  float64 `json:"client_rss_bytes"`  // the client workers' peak RSS
	KernelSockets   float64 `json:"kernel_sockets"`    // sockets per connection, both ends on loopback
	ServerConnDelta int64   `json:"server_conns_seen"` // the server's own count of new connections
}

// FanoutResult is the fanout scenario: one message to every subscriber,
// R times, one after the other.
type FanoutResult struct {
	Accounting
	Latency     Latency     `json:"latency"`      // per receipt: receipt time - send time
	LastReceipt LastReceipt `json:"last_receipt"` // per message: its last receipt's latency
	Client      ClientUsage `json:"client"`
}

// LastReceipt is, per message, the time from sending it to its last
// receipt, summarised over the messages.
type LastReceipt struct {
	P50US  int64   `json:"p50_us"`
	MeanUS float64 `json:"mean_us"`
	MaxUS  int64   `json:"max_us"`
	EachUS []int64 `json:"each_us"`
}

// ThroughputResult is the throughput scenario: sustained broadcast, closed
// loop or open loop at OfferedRate.
type ThroughputResult struct {
	Accounting
	// OfferedRate is the open loop's rate, messages per second; 0: closed
	// loop. Publishers is the most publishes that were in flight at once,
	// Late the messages handed to a publisher more than one interval after
	// they were due (all were busy, at --publishers), PublishErrors the
	// publishes that failed. MissedRate says that the run did not offer
	// its rate: under 97% of it published, or any publish failed.
	OfferedRate           float64     `json:"offered_rate,omitempty"`
	Publishers            int         `json:"publishers,omitempty"`
	Late                  int64       `json:"late,omitempty"`
	PublishErrors         int64       `json:"publish_errors,omitempty"`
	MissedRate            bool        `json:"missed_rate,omitempty"`
	PublishSeconds        float64     `json:"publish_s"` // --duration, or longer if the last message went out after it
	Seconds               float64     `json:"seconds"`   // publish start to last receipt
	PublishRate           float64     `json:"publish_rate"`
	DeliveriesPerSecond   float64     `json:"deliveries_per_s"`
	ServerCPUSeconds      float64     `json:"server_cpu_s"`            // -1: unknown
	ServerCPUPerMillion   float64     `json:"server_cpu_s_per_m"`      // CPU seconds per million deliveries; -1: unknown
	ServerDrops           int64       `json:"server_drops"`            // the server's own count; -1: not reported
	ServerSlowDisconnects int64       `json:"server_slow_disconnects"` // the server's own count; -1: not reported
	Latency               Latency     `json:"latency"`
	Client                ClientUsage `json:"client"`
}

// EchoResult is the echo scenario: round trips on /echo.
type EchoResult struct {
	Concurrency int         `json:"c"`
	Size        int         `json:"size"`
	Seconds     float64     `json:"seconds"`
	RoundTrips  int64       `json:"round_trips"`
	PerSecond   float64     `json:"per_second"`
	Errors      int64       `json:"errors"` // echoes of the wrong length
	Latency     Latency     `json:"latency"`
	Client      ClientUsage `json:"client"`
}

// ChurnResult is the churn scenario: connect, subscribe, disconnect. Before
// and After are the server once settled (see runner.settledSample), before
// the first cycle and after the last.
type ChurnResult struct {
	Concurrency int              `json:"c"`
	Requested   int64            `json:"requested_cycles,omitempty"` // --cycles; 0: the run lasted --duration
	Seconds     float64          `json:"seconds"`
	Cycles      int64            `json:"cycles"`
	PerSecond   float64          `json:"per_second"`
	Failed      int64            `json:"failed"`
	Errors      map[string]int64 `json:"errors,omitempty"`
	Before      Sample           `json:"before"`
	After       Sample           `json:"after"`
	Delta       ChurnDelta       `json:"delta"`
	// SettleSeconds is the time from the last cycle to the After sample.
	SettleSeconds float64 `json:"settle_s"`
	// Settled says whether the server's figures stopped changing before
	// --timeout; if not, After is the last sample taken.
	Settled bool `json:"settled"`
	// HeapAfterGC says whether each heap figure was read right after a
	// garbage collection the harness asked for (see runner.collectGarbage;
	// fanout serves it with --pprof). Without one, the figures include
	// garbage not yet collected, and may differ by megabytes from one
	// reading to the next.
	HeapAfterGC bool        `json:"heap_after_gc"`
	Client      ClientUsage `json:"client"`
}

// ChurnDelta is after minus before; -1 where the server does not report.
type ChurnDelta struct {
	Connections   int64 `json:"connections"`
	FDs           int64 `json:"fds"`
	Goroutines    int64 `json:"goroutines"`
	Clients       int64 `json:"clients"`
	Subscriptions int64 `json:"subscriptions"`
	HeapBytes     int64 `json:"go_heap_bytes"`
	RSSBytes      int64 `json:"rss_bytes"`
	RSSAnonBytes  int64 `json:"rss_anon_bytes"`
}

// delta returns after - before, or -1 if either is unknown.
func delta(before, after int64) int64 {
	if before < 0 || after < 0 {
		return -1
	}
	return after - before
}

// perConn returns (after - before) / n, or -1 if unknown.
func perConn(before, after, n int64) float64 {
	if before < 0 || after < 0 || n <= 0 {
		return -1
	}
	return float64(after-before) / float64(n)
}

// writeJSON writes v, indented, to path.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("bench: encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("bench: write report: %w", err)
	}
	return nil
}

// Human-readable formatting.

// fmtBytes formats a byte count; -1 means unknown.
func fmtBytes(v float64) string {
	switch {
	case v == -1:
		return "n/a"
	case v < 0:
		return "-" + fmtBytes(-v)
	case v >= 1<<30:
		return fmt.Sprintf("%.2f GiB", v/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1f MiB", v/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.2f KiB", v/(1<<10))
	}
	return fmt.Sprintf("%.0f B", v)
}

func fmtInt(v int64) string {
	if v < 0 {
		return "n/a"
	}
	return fmt.Sprint(v)
}

func fmtFloat(v float64, prec int) string {
	if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
		return "n/a"
	}
	return fmt.Sprintf("%.*f", prec, v)
}

// fmtUS formats microseconds as a duration.
func fmtUS(us int64) string {
	switch {
	case us < 0:
		return "n/a"
	case us < 1000:
		return fmt.Sprintf("%dµs", us)
	case us < 1_000_000:
		return fmt.Sprintf("%.2fms", float64(us)/1000)
	}
	return fmt.Sprintf("%.2fs", float64(us)/1e6)
}

func fmtLatency(l Latency) string {
	if l.Count == 0 {
		return "no samples"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (%d samples)",
		fmtUS(l.P50US), fmtUS(l.P90US), fmtUS(l.P99US), fmtUS(l.P999US), fmtUS(l.MaxUS), l.Count)
}

func fmtClient(c ClientUsage) string {
	return fmt.Sprintf("%.2f cores over %.1fs across %d worker(s) (busiest %.2f cores), peak worker RSS %s",
		c.Cores, c.WallSeconds, c.Workers, c.MaxWorkerCores, fmtBytes(float64(c.MaxRSSBytes)))
}

func fmtCodes(m map[string]int64) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%s×%d", k, m[k])
	}
	return b.String()
}

func writeAccounting(w io.Writer, a Accounting) {
	ok := "every delivery accounted for"
	if !a.Balanced() {
		ok = "NOT BALANCED"
	}
	fmt.Fprintf(w, "  deliveries     %d expected (%d subscribers × %d messages): %d received, %d dropped, %d lost to disconnects — %s\n",
		a.Expected, a.Subscribers, a.Messages, a.Receipts, a.Drops, a.LostToDisconnect, ok)
	fmt.Fprintf(w, "  disconnects    %d (close codes: %s); duplicates %d\n", a.Disconnects, fmtCodes(a.CloseCodes), a.Duplicates)
}

// WriteSummary writes the report for a person.
func (r *Report) WriteSummary(w io.Writer) {
	name := r.Server.Name
	if name == "" {
		name = r.URL
	}
	fmt.Fprintf(w, "fanout bench %s — %s (server pid %s)\n", r.Scenario, name, pidString(r.Server.PID))
	fmt.Fprintf(w, "  fleet          %d worker process(es), ≤%d connections each, %d source address(es), ≤%d per address\n",
		r.Fleet.Workers, r.Fleet.ConnsPerWorker, max(1, len(r.Fleet.Sources)), r.Fleet.ConnsPerSource)
	if d := r.Dial; d != nil {
		fmt.Fprintf(w, "  ramp-up        %d/%d connected in %.2fs (%.0f/s), %d failed%s\n",
			d.Open, d.Requested, d.Seconds, d.PerSecond, d.Failed, fmtErrors(d.Errors))
		server := "server CPU unknown"
		if d.ServerCPUSeconds >= 0 && d.Seconds > 0 {
			server = fmt.Sprintf("server %.2f CPU-s (%.0f µs per connection, %.2f cores)",
				d.ServerCPUSeconds, d.ServerMicrosPerConn(), d.ServerCPUSeconds/d.Seconds)
		}
		fmt.Fprintf(w, "  ramp-up cost   %s; clients %.2f cores (busiest worker %.2f)\n",
			server, d.Client.Cores, d.Client.MaxWorkerCores)
	}
	if x := r.Idle; x != nil {
		settled := fmt.Sprintf("RSS settled %.1fs after --settle", x.SettleSeconds)
		if !x.Settled {
			settled = "RSS NOT SETTLED: still changing after --timeout"
		}
		from := "the server's /stats"
		if x.After.MemoryFrom == "proc" {
			from = "/proc/PID/status"
		}
		fmt.Fprintf(w, "\nidle: %d subscribed connections, %s; RSS from %s\n", x.Conns, settled, from)
		fmt.Fprintf(w, "  %-22s %12s %12s %14s\n", "", "before", "after", "per connection")
		row := func(label string, b, a int64, per float64, bytes bool) {
			if bytes {
				fmt.Fprintf(w, "  %-22s %12s %12s %14s\n", label, fmtBytes(float64(b)), fmtBytes(float64(a)), fmtBytes(per))
				return
			}
			fmt.Fprintf(w, "  %-22s %12s %12s %14s\n", label, fmtInt(b), fmtInt(a), fmtFloat(per, 2))
		}
		row("server RSS", x.Before.Server.RSSBytes, x.After.Server.RSSBytes, x.PerConn.RSSBytes, true)
		if x.Before.Server.RSSAnonBytes >= 0 {
			row("server anon RSS", x.Before.Server.RSSAnonBytes, x.After.Server.RSSAnonBytes, x.PerConn.RSSAnonBytes, true)
		}
		row("server Go heap", x.Before.Server.HeapBytes, x.After.Server.HeapBytes, x.PerConn.HeapBytes, true)
		row("server open fds", x.Before.Server.OpenFDs, x.After.Server.OpenFDs, x.PerConn.FDs, false)
		row("server goroutines", x.Before.Server.Goroutines, x.After.Server.Goroutines, x.PerConn.Goroutines, false)
		row("server connections", x.Before.Server.Connections, x.After.Server.Connections, -1, false)
		fmt.Fprintf(w, "  kernel, apart from the server's own memory (on loopback both ends count; idle sockets hold little buffer memory):\n")
		row("  TCP socket memory", x.Before.Kernel.TCPMemBytes, x.After.Kernel.TCPMemBytes, x.PerConn.KernelTCPBytes, true)
		row("  sockets in use", x.Before.Kernel.SocketsUsed, x.After.Kernel.SocketsUsed, x.PerConn.KernelSockets, false)
		fmt.Fprintf(w, "  client         %s (%s per connection)\n", fmtClient(x.Client), fmtBytes(x.PerConn.ClientRSSBytes))
	}
	if x := r.Fanout; x != nil {
		fmt.Fprintf(w, "\nfanout: %d messages, each to %d subscribers, one at a time\n", x.Messages, x.Subscribers)
		fmt.Fprintf(w, "  latency        %s\n", fmtLatency(x.Latency))
		fmt.Fprintf(w, "  last receipt   p50 %s  mean %s  max %s (per message: send to its last receipt)\n",
			fmtUS(x.LastReceipt.P50US), fmtUS(int64(x.LastReceipt.MeanUS)), fmtUS(x.LastReceipt.MaxUS))
		writeAccounting(w, x.Accounting)
		fmt.Fprintf(w, "  client         %s\n", fmtClient(x.Client))
	}
	if x := r.Throughput; x != nil {
		fmt.Fprintf(w, "\nthroughput, closed loop: %d messages in %.1fs (%.0f/s) to %d subscribers\n", x.Messages, x.PublishSeconds, x.PublishRate, x.Subscribers)
		writeThroughput(w, x)
	}
	for _, x := range r.Rates {
		fmt.Fprintf(w, "\nthroughput, open loop at %g/s: %d messages in %.1fs (%.1f/s) to %d subscribers, from up to %d publishers\n",
			x.OfferedRate, x.Messages, x.PublishSeconds, x.PublishRate, x.Subscribers, x.Publishers)
		if x.MissedRate {
			fmt.Fprintf(w, "  MISSED         the offered rate: %d publishes failed, %d went out over an interval late\n", x.PublishErrors, x.Late)
		}
		writeThroughput(w, x)
	}
	if x := r.Echo; x != nil {
		fmt.Fprintf(w, "\necho: %d connections, %d-byte messages, %.1fs\n", x.Concurrency, x.Size, x.Seconds)
		fmt.Fprintf(w, "  round trips    %d (%.0f/s), %d wrong-length echoes\n", x.RoundTrips, x.PerSecond, x.Errors)
		fmt.Fprintf(w, "  latency        %s\n", fmtLatency(x.Latency))
		fmt.Fprintf(w, "  client         %s\n", fmtClient(x.Client))
	}
	if x := r.Churn; x != nil {
		run := fmt.Sprintf("%.1fs", x.Seconds)
		if x.Requested > 0 {
			run = fmt.Sprintf("%d cycles requested, %.1fs", x.Requested, x.Seconds)
		}
		fmt.Fprintf(w, "\nchurn: %d slots, connect + subscribe + close, %s\n", x.Concurrency, run)
		fmt.Fprintf(w, "  cycles         %d (%.0f/s), %d failed%s\n", x.Cycles, x.PerSecond, x.Failed, fmtErrors(x.Errors))
		settled := "once two readings in a row agreed"
		if !x.Settled {
			settled = "NOT SETTLED: still changing after --timeout"
		}
		fmt.Fprintf(w, "  server         read %.1fs after the last cycle, %s\n", x.SettleSeconds, settled)
		fmt.Fprintf(w, "  %-22s %12s %12s %12s\n", "", "before", "after", "delta")
		row := func(label string, b, a, d int64) {
			fmt.Fprintf(w, "  %-22s %12s %12s %12s\n", label, fmtInt(b), fmtInt(a), fmtInt(d))
		}
		bytesRow := func(label string, b, a int64) {
			fmt.Fprintf(w, "  %-22s %12s %12s %12s\n", label, fmtBytes(float64(b)), fmtBytes(float64(a)), signedBytes(b, a))
		}
		b, a := x.Before.Server, x.After.Server
		row("server connections", b.Connections, a.Connections, x.Delta.Connections)
		row("server open fds", b.OpenFDs, a.OpenFDs, x.Delta.FDs)
		row("server goroutines", b.Goroutines, a.Goroutines, x.Delta.Goroutines)
		if b.Clients >= 0 || a.Clients >= 0 {
			row("hub clients", b.Clients, a.Clients, x.Delta.Clients)
			row("hub subscriptions", b.Subscriptions, a.Subscriptions, x.Delta.Subscriptions)
		}
		heap := "server Go heap"
		if x.HeapAfterGC {
			heap += " (GC'd)"
		}
		bytesRow(heap, b.HeapBytes, a.HeapBytes)
		bytesRow("server RSS", b.RSSBytes, a.RSSBytes)
		if b.RSSAnonBytes >= 0 {
			bytesRow("server anon RSS", b.RSSAnonBytes, a.RSSAnonBytes)
		}
		if !x.HeapAfterGC {
			fmt.Fprintf(w, "  note           the heap figures include garbage not yet collected; a server with\n"+
				"                 /debug/pprof/ (fanout serve --pprof) is asked for a GC before each reading\n")
		}
		fmt.Fprintf(w, "  client         %s\n", fmtClient(x.Client))
	}
}

// signedBytes formats after - before with its sign; -1 (unknown) in either
// gives n/a.
func signedBytes(before, after int64) string {
	if before < 0 || after < 0 {
		return "n/a"
	}
	d := after - before
	if d < 0 {
		return "-" + fmtBytes(float64(-d))
	}
	return "+" + fmtBytes(float64(d))
}

func pidString(pid int) string {
	if pid <= 0 {
		return "unknown: no server CPU figures"
	}
	return fmt.Sprint(pid)
}

func fmtErrors(m map[string]int64) string {
	if len(m) == 0 {
		return ""
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return m[keys[i]] > m[keys[j]] })
	var b strings.Builder
	b.WriteString(" (")
	for i, k := range keys {
		if i == 3 {
			fmt.Fprintf(&b, "; %d more kinds", len(keys)-3)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%d× %s", m[k], k)
	}
	b.WriteString(")")
	return b.String()
}

// writeThroughput writes the figures of one throughput run.
func writeThroughput(w io.Writer, x *ThroughputResult) {
	fmt.Fprintf(w, "  deliveries     %.0f per second (%d in %.2fs, publish start to last receipt)\n", x.DeliveriesPerSecond, x.Receipts, x.Seconds)
	fmt.Fprintf(w, "  server CPU     %s s, %s CPU-seconds per million deliveries\n", fmtFloat(x.ServerCPUSeconds, 2), fmtFloat(x.ServerCPUPerMillion, 3))
	fmt.Fprintf(w, "  latency        %s\n", fmtLatency(x.Latency))
	writeAccounting(w, x.Accounting)
	fmt.Fprintf(w, "  server says    drops %s, slow-consumer disconnects %s\n", fmtInt(x.ServerDrops), fmtInt(x.ServerSlowDisconnects))
	fmt.Fprintf(w, "  client         %s\n", fmtClient(x.Client))
}
