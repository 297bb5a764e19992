package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Options are the flags of "fanout bench". Each scenario reads the ones it
// needs; the zero value is not useful, see register for the defaults.
type Options struct {
	// build builds a server for compare; nil means buildServer. Tests set it.
	build func(ctx context.Context, src, dir, name string, stderr io.Writer) (string, error)

	URL        string // server base URL, ws://host:port
	PublishURL string // default http://host:port/publish
	StatsURL   string // default http://host:port/stats
	WSPath     string // subscribe endpoint path
	EchoPath   string // echo endpoint path
	Topic      string
	Token      string // presented by every client (--token)
	JWTSecret  string // mints a token per client (--jwt-secret)
	// Compression offers permessage-deflate in every upgrade (no context
	// takeover either way), as browsers do.
	Compression bool

	Conns             int // N: subscribers (idle, fanout, throughput)
	Workers           int // K: worker processes (0: enough for MaxConnsPerWorker)
	MaxConnsPerWorker int
	Sources           int    // loopback source addresses (0: enough for the port range)
	SourceBase        string // first loopback source address
	Bind              string // explicit source addresses, comma-separated
	DialConcurrency   int    // connects in flight, all workers together
	DialTimeout       time.Duration

	Repeat       int           // R: fanout messages
	Interval     time.Duration // fanout pause between messages
	Duration     time.Duration // D: throughput, echo and churn length (churn: unless Cycles)
	Rates        rateList      // throughput: open loop at each of these messages per second (none: windowed)
	Window       int           // throughput messages in flight (windowed)
	Publishers   int           // throughput, open loop: most publishes in flight
	PayloadBytes int           // fanout and throughput data size
	Concurrency  int           // C: echo connections, churn slots
	Cycles       int64         // churn: stop after this many cycles (0: after Duration)
	Size         int           // S: echo message size

	Settle    time.Duration // pause before an "after" sample
	Timeout   time.Duration // longest wait with no progress
	CatchUp   time.Duration // throughput: longest wait for receipts once publishing has ended
	ServerPID int           // 0: look for the listener on loopback; -1: none

	JSON     string // write the report here
	Quiet    bool
	LogLevel slog.Level

	ClientCPUs cpuList // CPUs the worker processes run on (none: any)

	// compare only
	ServerCPUs cpuList // CPUs the servers run on (none: any)
	Servers    string  // comma-separated
	Src        string  // module root
	Out        string  // directory for binaries, JSON and chart
	Chart      string  // PNG path (default OUT/compare.png)
}

// register defines the flags on fs.
func (o *Options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.URL, "url", "ws://127.0.0.1:8080", "server base `URL` (ws://host:port); the endpoints are found under it. Several, comma-separated (a cluster's nodes): connections go to each in turn, publishes too, and the servers' figures are summed")
	fs.StringVar(&o.PublishURL, "publish-url", "", "publish `URL` (default: http://host:port/publish from --url); ?topic= is added")
	fs.StringVar(&o.StatsURL, "stats-url", "", "stats `URL` (default: http://host:port/stats from --url)")
	fs.StringVar(&o.WSPath, "ws-path", "/ws", "subscribe endpoint `path`; ?topics=TOPIC is added")
	fs.StringVar(&o.EchoPath, "echo-path", "/echo", "echo endpoint `path` (echo scenario)")
	fs.StringVar(&o.Topic, "topic", "bench", "the `topic` every subscriber subscribes to and every message goes to")
	fs.StringVar(&o.Token, "token", "", "a `token` every connection and publish presents (Authorization: Bearer), for a server with authentication; it must grant subscribing to and publishing on --topic (default: $FANOUT_TOKEN)")
	fs.StringVar(&o.JWTSecret, "jwt-secret", "", "the server's HS256 `secret`, to mint a token per client (sub bench-PID-N, granting --topic, valid 24h) and one for publishing (default: $FANOUT_JWT_SECRET; the environment keeps it out of ps)")

	fs.BoolVar(&o.Compression, "compression", false, "offer permessage-deflate in every upgrade, as browsers do (client and server without context takeover)")

	fs.IntVar(&o.Conns, "n", 1000, "`N`: subscriber connections (idle, fanout, throughput, compare)")
	fs.IntVar(&o.Workers, "workers", 0, "`K`: client worker processes (0: as many as --max-conns-per-worker needs, and one per 2,000 connections up to 4, since one process dials at most about 5,000 connections a second)")
	fs.IntVar(&o.MaxConnsPerWorker, "max-conns-per-worker", 18000, "most connections one worker process holds (each is an open file)")
	fs.IntVar(&o.Sources, "sources", 0, "loopback source addresses to spread connections over (0: enough for the ephemeral port range)")
	fs.StringVar(&o.SourceBase, "source-base", "127.0.0.2", "first loopback source `address`; the others follow it")
	fs.StringVar(&o.Bind, "bind", "", "explicit source `addresses`, comma-separated, instead of loopback ones (for a non-loopback server)")
	fs.IntVar(&o.DialConcurrency, "dial-concurrency", 512, "connects and upgrades in flight, all workers together")
	fs.DurationVar(&o.DialTimeout, "dial-timeout", 10*time.Second, "time one connection has to connect and upgrade")

	fs.IntVar(&o.Repeat, "repeat", 50, "`R`: messages the fanout scenario sends, one at a time")
	fs.DurationVar(&o.Interval, "interval", 0, "fanout: pause between a message's last receipt and the next message")
	fs.DurationVar(&o.Duration, "duration", 10*time.Second, "`D`: length of throughput, echo and churn (unless --cycles)")
	fs.Var(&o.Rates, "rate", "throughput: open loop at each of these `rates` in turn, messages per second, comma-separated; each message carries the time it was due, and latency counts from then (default: closed loop, see --window; compare: "+defaultCompareRates+")")
	fs.IntVar(&o.Window, "window", 16, "throughput, closed loop: messages published but not yet received by every subscriber")
	fs.IntVar(&o.Publishers, "publishers", 256, "throughput, open loop: most publishes in flight; a message due while all are busy starts another, up to this")
	fs.IntVar(&o.PayloadBytes, "payload-bytes", 0, "fanout and throughput: pad each message's data to this many `bytes`")
	fs.IntVar(&o.Concurrency, "c", 100, "`C`: echo connections, each with one message in flight; churn slots")
	fs.IntVar(&o.Size, "size", 64, "`S`: echo message size in bytes")
	fs.Int64Var(&o.Cycles, "cycles", 0, "churn: stop after `N` cycles in all, spread over the worker processes, instead of after --duration (0: --duration)")

	fs.DurationVar(&o.Settle, "settle", 2*time.Second, "wait this long before an \"after\" sample (idle, churn)")
	fs.DurationVar(&o.Timeout, "timeout", 10*time.Second, "give up waiting for receipts or for the server after this long without progress")
	fs.DurationVar(&o.CatchUp, "catch-up", time.Minute, "throughput: wait at most this long, once publishing has ended, for the receipts still on their way, even while they come; those that have not come by then count as not delivered")
	fs.IntVar(&o.ServerPID, "server-pid", 0, "server process `pid`, for its CPU time (0: find the process listening on a loopback --url; -1: none)")

	fs.StringVar(&o.JSON, "json", "", "also write the report as JSON to `FILE`")
	fs.BoolVar(&o.Quiet, "quiet", false, "no progress bars (they are also off when stderr is not a terminal)")
	fs.TextVar(&o.LogLevel, "log-level", slog.LevelInfo, "log `level`: debug, info, warn or error")

	fs.Var(&o.ClientCPUs, "client-cpus", "run the client worker processes on these `CPUs` alone (as taskset takes them: 1, 0,2, 1-3); with --server-cpus, client and server do not share a core")
	fs.Var(&o.ServerCPUs, "server-cpus", "compare: run each server on these `CPUs` alone (a Go server sizes GOMAXPROCS to them)")
	fs.StringVar(&o.Servers, "servers", "fanout,gorillahub,gobwasgoroutine,nbio,gws", "compare: servers to build and run, in order")
	fs.StringVar(&o.Src, "src", "", "compare: the fanout module's `directory` (default: found from the working directory)")
	fs.StringVar(&o.Out, "out", "bench-results", "compare: `directory` for the built servers, compare.json and compare.png")
	fs.StringVar(&o.Chart, "chart", "", "compare: chart `file` (PNG; default OUT/compare.png)")
}

// validate checks the options that every scenario uses.
func (o *Options) validate() error {
	switch {
	case o.Conns < 1:
		return fmt.Errorf("-n must be at least 1")
	case o.Workers < 0:
		return fmt.Errorf("--workers must not be negative")
	case o.MaxConnsPerWorker < 1:
		return fmt.Errorf("--max-conns-per-worker must be at least 1")
	case o.Repeat < 1:
		return fmt.Errorf("--repeat must be at least 1")
	case o.Duration <= 0:
		return fmt.Errorf("--duration must be positive")
	case o.Window < 1:
		return fmt.Errorf("--window must be at least 1")
	case o.Publishers < 1:
		return fmt.Errorf("--publishers must be at least 1")
	case o.Concurrency < 1:
		return fmt.Errorf("-c must be at least 1")
	case o.Size < 0:
		return fmt.Errorf("--size must not be negative")
	case o.Cycles < 0:
		return fmt.Errorf("--cycles must not be negative")
	case o.DialConcurrency < 1:
		return fmt.Errorf("--dial-concurrency must be at least 1")
	case o.Timeout <= 0:
		return fmt.Errorf("--timeout must be positive")
	case o.CatchUp <= 0:
		return fmt.Errorf("--catch-up must be positive")
	}
	if _, err := newCredentials(o.Token, o.JWTSecret, o.Topic); err != nil {
		return err
	}
	return nil
}

// target is where the clients go, resolved from the options.
type target struct {
	host       string         // Host header, host:port
	addr       netip.AddrPort // the server's resolved address
	loopback   bool
	subPath    string // request path of a subscriber
	echoPath   string
	publishURL string
	statsURL   string
}

// maxTargets bounds the servers of --url (a connection keeps its server's
// index in a byte).
const maxTargets = 64

// resolveTargets parses each URL of --url, a comma-separated list, and
// derives the HTTP endpoints from it. --publish-url, --stats-url and
// --server-pid name one server's, so they go with one URL only.
func resolveTargets(ctx context.Context, o *Options) ([]target, error) {
	urls := splitList(o.URL)
	if len(urls) == 0 {
		return nil, errors.New("--url: no URL")
	}
	if len(urls) > maxTargets {
		return nil, fmt.Errorf("--url: %d URLs, at most %d", len(urls), maxTargets)
	}
	if len(urls) > 1 && (o.PublishURL != "" || o.StatsURL != "" || o.ServerPID > 0) {
		return nil, errors.New("--publish-url, --stats-url and --server-pid name one server: use them with one --url")
	}
	var ts []target
	for _, u := range urls {
		one := *o
		one.URL = u
		t, err := resolveTarget(ctx, &one)
		if err != nil {
			return nil, err
		}
		ts = append(ts, t)
	}
	return ts, nil
}

// resolveTarget parses --url, one URL, and derives the HTTP endpoints from
// it.
func resolveTarget(ctx context.Context, o *Options) (target, error) {
	u, err := url.Parse(o.URL)
	if err != nil {
		return target{}, fmt.Errorf("--url: %w", err)
	}
	if u.Scheme != "ws" && u.Scheme != "http" {
		return target{}, fmt.Errorf("--url: scheme %q: only ws:// (plain TCP) is supported", u.Scheme)
	}
	host, portStr := u.Hostname(), u.Port()
	if portStr == "" {
		portStr = "80"
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 1 || port > 65535 {
		return target{}, fmt.Errorf("--url: bad port %q", portStr)
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if err != nil || len(ips) == 0 {
			return target{}, fmt.Errorf("--url: resolve %q: %w", host, err)
		}
		addr = ips[0]
		for _, ip := range ips {
			if ip.Is4() {
				addr = ip
				break
			}
		}
	}
	t := target{
		host:       u.Host,
		addr:       netip.AddrPortFrom(addr.Unmap(), uint16(port)),
		loopback:   addr.IsLoopback(),
		subPath:    o.WSPath + "?topics=" + url.QueryEscape(o.Topic),
		echoPath:   o.EchoPath,
		publishURL: o.PublishURL,
		statsURL:   o.StatsURL,
	}
	if u.Port() == "" {
		t.host = net.JoinHostPort(host, portStr)
	}
	base := "http://" + u.Host
	if t.publishURL == "" {
		t.publishURL = base + "/publish"
	}
	pu, err := url.Parse(t.publishURL)
	if err != nil {
		return target{}, fmt.Errorf("--publish-url: %w", err)
	}
	q := pu.Query()
	q.Set("topic", o.Topic)
	pu.RawQuery = q.Encode()
	t.publishURL = pu.String()
	if t.statsURL == "" {
		t.statsURL = base + "/stats"
	}
	return t, nil
}

// splitList splits a comma-separated list, dropping empty items.
func splitList(s string) []string {
	var out []string
	for item := range strings.SplitSeq(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}
