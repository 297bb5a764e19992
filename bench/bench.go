// Package bench is the load harness of fanout: "fanout bench SCENARIO"
// measures a WebSocket broadcast server, fanout or another one that speaks
// the same minimal protocol, and "fanout bench compare" measures fanout and
// the reference servers of bench/peers side by side.
//
// The client connections live in worker processes: the harness starts K
// copies of its own executable with a hidden "bench worker" subcommand,
// each holding at most --max-conns-per-worker connections, spread over
// loopback source addresses (127.0.0.2 and up) so that ephemeral ports do
// not run out. A worker runs its connections on the project's own reactor
// (package poller): raw non-blocking sockets, no goroutine per
// connection. The parent drives the workers with JSON lines over their
// stdin and stdout.
//
// What a server must offer: GET /ws?topics=NAME (a WebSocket that receives
// {"topic","seq","data"} text frames of NAME), POST /publish?topic=NAME
// (answering {"seq":N}), GET /stats (JSON; fanout's nested shape or flat
// rss_bytes, go_heap_bytes, goroutines, open_fds and connections) and,
// for the echo scenario, GET /echo.
package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Scenarios that "fanout bench" runs against one server.
var scenarios = []string{"idle", "fanout", "throughput", "echo", "churn"}

const helpText = `Usage: fanout bench SCENARIO [flags]
       fanout bench compare [flags]

Load-tests a WebSocket broadcast server at --url (default ws://127.0.0.1:8080):
fanout itself, or any server with the same minimal protocol:
  GET  /ws?topics=NAME          subscribe; messages arrive as {"topic","seq","data"} text frames
  POST /publish?topic=NAME      publish the JSON body; answers {"seq":N}
  GET  /stats                   JSON with rss_bytes, go_heap_bytes, goroutines, open_fds,
                                connections (flat, or nested as fanout's "process"/"server")
  GET  /echo                    WebSocket echo (echo scenario only)

Scenarios:
  idle        Server RSS, Go heap, open fds and goroutines (from /stats) before and after
              -n idle subscribed connections, once settled (--settle), and per connection;
              the kernel's TCP socket memory (/proc/net/sockstat) is reported apart: on
              loopback it counts both ends.
  fanout      -n subscribers; --repeat messages, one at a time, each sent to all of them
              and awaited everywhere before the next. Per-receipt latency (p50, p90, p99,
              p99.9, max; the send time travels in the message as data {"t": unix-nanos})
              and, per message, the time until its last receipt.
  throughput  -n subscribers; broadcast for --duration, closed loop (at most --window
              messages not yet received by everyone) or open loop at each --rate in turn
              (e.g. --rate 20,100,400). Open loop, message i is due at i/rate and carries
              that time: latency counts from when it was due, and a message due while
              every publisher is busy starts another (up to --publishers), so a server
              slow to answer publishes is still offered the rate (a run that was not says
              MISSED). Deliveries per second, server CPU-seconds per million deliveries
              (needs the server's pid: --server-pid, or found on loopback), drops (seq
              gaps and messages that never came: a server still behind --catch-up after
              publishing ends is not waited for) and slow-consumer disconnects (by close
              code).
  echo        -c connections to /echo, each with one --size-byte message in flight, for
              --duration: round trips per second and round-trip latency percentiles.
  churn       -c slots that connect, subscribe (?topics=) and close, over and over, for
              --duration, or until --cycles cycles are done (shared out among the worker
              processes): cycles per second, and the server's connections, open fds,
              goroutines, hub clients and subscriptions, Go heap and RSS before the first
              cycle and after the last, each read once the server has settled (two
              readings in a row agree). If the server serves /debug/pprof/ (fanout serve
              --pprof), it is asked for a GC before each reading, so that the heap figures
              are live memory rather than garbage not yet collected.
  compare     Builds fanout (go build -o OUT/fanout .) and each server of --servers from
              bench/peers (go build -o OUT/NAME ./NAME), runs each in turn on a fresh
              loopback port through the same idle, fanout and open-loop throughput runs
              at -n (--rate, default ` + defaultCompareRates + `), and prints two markdown
              tables: memory and fanout, then a row per server and rate; writes
              OUT/compare.json and a chart (PNG) of memory per connection and latency
              CDFs. A peer whose directory is missing is skipped with a message.

A server with authentication (fanout serve --jwt-secret): --jwt-secret mints a token per
client (sub bench-PID-N, so each connection is also subscribed to its own user:SUB topic
as real users are) and one for publishing, each granting --topic; --token presents one
token everywhere, which must grant subscribing to and publishing on --topic.

Every delivery is accounted for: subscribers × messages = received + dropped + lost to
disconnects. The client's own CPU (the worker processes') is reported with each result,
so a reader can check that the client was not the bottleneck.

The client fleet: K worker processes (copies of this program), each holding at most
--max-conns-per-worker connections, which must fit its open-file limit, and by default
one per 2,000 connections up to 4, since one process dials at most about 5,000
connections a second on loopback; connections
come from loopback source addresses 127.0.0.2 and up (--sources, --source-base), each of
which has the whole ephemeral port range. The limits are checked before anything
starts, and an error says what to raise.

Examples:
  fanout bench idle -n 15000                         memory per connection at 15,000
  fanout bench fanout -n 15000 --repeat 50 --json f.json
  fanout bench throughput -n 5000 --duration 30s --server-pid 1234
  fanout bench throughput -n 15000 --rate 20,100,400
  fanout bench fanout -n 6000 --url ws://127.0.0.1:8081,ws://127.0.0.1:8082,ws://127.0.0.1:8083
                                                     a cluster's three nodes: clients and publishes
                                                     spread over them, their figures summed
  fanout bench echo -c 200 --size 1024 --url ws://10.0.0.5:8080 --bind 10.0.0.9
  fanout bench churn -c 100 --cycles 200000           do fds, goroutines and heap come back?
  fanout bench compare -n 15000 --out bench-results
  fanout bench compare -n 15000 --server-cpus 0 --client-cpus 1   server and clients on a core each

Flags (one dash or two; every scenario reads the ones it needs):
`

// Main runs "fanout bench" with args (the words after "bench") and returns
// the exit status. The hidden "worker" subcommand, or the WorkerEnv
// variable, runs a worker process instead.
func Main(args []string, stdout, stderr io.Writer) int {
	if IsWorker() || (len(args) > 0 && args[0] == "worker") {
		return RunWorker(os.Stdin, os.Stdout, stderr)
	}
	stderr = lockedWriter(stderr)
	var o Options
	fs := flag.NewFlagSet("fanout bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	o.register(fs)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), helpText)
		fs.PrintDefaults()
	}
	if len(args) == 0 {
		fs.Usage()
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fs.SetOutput(stdout)
		fs.Usage()
		return 0
	}
	scenario, rest := args[0], args[1:]
	if scenario != "compare" && !isScenario(scenario) {
		fmt.Fprintf(stderr, "fanout bench: unknown scenario %q (want idle, fanout, throughput, echo, churn or compare)\n", scenario)
		return 2
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "fanout bench %s: unexpected arguments %q\n", scenario, fs.Args())
		return 2
	}
	if err := o.validate(); err != nil {
		fmt.Fprintf(stderr, "fanout bench %s: %v\n", scenario, err)
		return 2
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: o.LogLevel}))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	if scenario == "compare" {
		if err := Compare(ctx, &o, stdout, stderr, log); err != nil {
			fmt.Fprintf(stderr, "fanout bench compare: %v\n", err)
			return 1
		}
		return 0
	}
	rep, err := Run(ctx, scenario, &o, stderr, log)
	if rep != nil {
		rep.WriteSummary(stdout)
		if o.JSON != "" {
			if werr := writeJSON(o.JSON, rep); werr != nil {
				err = errors.Join(err, werr)
			}
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "fanout bench %s: %v\n", scenario, err)
		return 1
	}
	return 0
}

func isScenario(s string) bool {
	for _, x := range scenarios {
		if x == s {
			return true
		}
	}
	return false
}

// Run runs one scenario against the server of o.URL and returns its
// report. Progress bars and logs go to stderr. On an error after the
// scenario started, the report holds what was measured so far.
func Run(ctx context.Context, scenario string, o *Options, stderr io.Writer, log *slog.Logger) (*Report, error) {
	if !isScenario(scenario) {
		return nil, fmt.Errorf("unknown scenario %q", scenario)
	}
	if len(o.ServerCPUs) > 0 {
		return nil, errors.New("--server-cpus applies to compare, which starts the servers; pin your own server with taskset")
	}
	hold := o.Conns
	if scenario == "echo" || scenario == "churn" {
		hold = o.Concurrency
	}
	r, err := newRunner(ctx, o, stderr, log, hold)
	if err != nil {
		return nil, err
	}
	defer r.close()
	rep := r.newReport(scenario)
	start := time.Now()
	defer func() { rep.Seconds = time.Since(start).Seconds() }()
	if err := r.run(ctx, scenario, rep); err != nil {
		if ctx.Err() != nil {
			err = errors.Join(errInterrupted, err)
		}
		return rep, err
	}
	return rep, nil
}

func (r *runner) newReport(scenario string) *Report {
	o := r.o
	return &Report{
		Scenario: scenario,
		URL:      o.URL,
		Started:  time.Now(),
		Params: Params{
			Conns: o.Conns, Repeat: o.Repeat, Duration: o.Duration.Seconds(), Rates: o.Rates, Window: o.Window,
			ServerCPUs: o.ServerCPUs, ClientCPUs: o.ClientCPUs,
			PayloadBytes: o.PayloadBytes, Concurrency: o.Concurrency, Cycles: o.Cycles, Size: o.Size, Topic: o.Topic,
			Compression: o.Compression,
		},
		Server: ServerInfo{PID: r.pid},
		Fleet:  r.plan,
	}
}

// run runs scenario and fills rep.
func (r *runner) run(ctx context.Context, scenario string, rep *Report) error {
	if _, err := r.sample(ctx); err != nil {
		return fmt.Errorf("the server's stats are needed: %w", err)
	}
	switch scenario {
	case "idle":
		x, d, err := r.idle(ctx, r.o.Conns)
		rep.Dial, rep.Idle = d, x
		if err != nil {
			return err
		}
		return r.closeAll(ctx, "subscriber", x.Before.Server.Connections)
	case "fanout", "throughput":
		before, err := r.sample(ctx)
		if err != nil {
			return err
		}
		if rep.Dial, err = r.dial(ctx, "subscriber", r.t.subPath, r.o.Conns); err != nil {
			return err
		}
		if before.Server.Connections >= 0 {
			if _, err := r.waitServerConns(ctx, func(c int64) bool { return c >= before.Server.Connections+rep.Dial.Open }); err != nil {
				return err
			}
		}
		switch {
		case scenario == "fanout":
			rep.Fanout, err = r.fanout(ctx)
		case len(r.o.Rates) > 0:
			rep.Rates, err = r.rates(ctx)
		default:
			rep.Throughput, err = r.throughput(ctx, 0)
		}
		if err != nil {
			return err
		}
		return r.closeAll(ctx, "subscriber", before.Server.Connections)
	case "echo":
		before, err := r.sample(ctx)
		if err != nil {
			return err
		}
		if rep.Dial, err = r.dial(ctx, "echo", r.t.echoPath, r.o.Concurrency); err != nil {
			return err
		}
		if rep.Echo, err = r.echo(ctx, int(rep.Dial.Open)); err != nil {
			return err
		}
		return r.closeAll(ctx, "echo", before.Server.Connections)
	case "churn":
		var err error
		rep.Churn, err = r.churn(ctx)
		return err
	}
	return fmt.Errorf("unknown scenario %q", scenario)
}
