package bench

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// A worker is a child process of the harness that holds a share of the
// client connections. The parent sends it commands as JSON lines on its
// stdin and reads events as JSON lines from its stdout: a hello, progress
// every progressInterval while something changes, and one reply (or
// error) per command, in order. A worker exits when its stdin ends.

// WorkerEnv is the environment variable that marks a process as a bench
// worker. The harness sets it on the processes it starts; a test binary's
// TestMain checks it with IsWorker and then calls RunWorker.
const WorkerEnv = "FANOUT_BENCH_WORKER"

// WorkerProfileEnv names a directory: when it is set, each worker writes a
// CPU profile of itself there (worker-PID.pprof), to check what the client
// costs.
const WorkerProfileEnv = "FANOUT_BENCH_WORKER_CPUPROFILE"

// startCPUProfile profiles the process into path until stop is called.
func startCPUProfile(path string) (stop func(), err error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("bench worker: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("bench worker: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// progressInterval is how often a worker reports its counters.
const progressInterval = 10 * time.Millisecond

// IsWorker reports whether this process was started as a bench worker.
func IsWorker() bool { return os.Getenv(WorkerEnv) != "" }

// command is a message from the parent to a worker.
type command struct {
	Op          string       `json:"op"` // dial, reset, collect, echo_start, echo_stop, churn, close
	Dial        *dialCommand `json:"dial,omitempty"`
	Track       bool         `json:"track,omitempty"`       // reset: keep per-seq latencies
	Expected    int64        `json:"expected,omitempty"`    // collect: messages per subscriber
	Payload     []byte       `json:"payload,omitempty"`     // echo_start
	Concurrency int          `json:"concurrency,omitempty"` // churn
	Duration    Duration     `json:"duration,omitempty"`    // churn, unless Cycles
	Cycles      int64        `json:"cycles,omitempty"`      // churn: stop after this many (0: after Duration)
	Stall       Duration     `json:"stall,omitempty"`       // churn with Cycles: give up after this long without a cycle
	Kind        string       `json:"kind,omitempty"`        // close
}

// dialCommand says which connections a worker opens.
type dialCommand struct {
	Kind        string       `json:"kind"`    // subscriber, echo or churn
	Targets     []dialTarget `json:"targets"` // the servers, taken in turn
	Path        string       `json:"path"`    // request path and query
	Sources     []string     `json:"sources"` // source IPs, used in turn; none: kernel's choice
	N           int          `json:"n"`
	Concurrency int          `json:"concurrency"` // connects in flight
	Timeout     Duration     `json:"timeout"`     // per connection, connect and upgrade
	// Auth is the token to present, or the secret to mint one per
	// connection with; nil: none.
	Auth *credentials `json:"auth,omitempty"`
	// Offer is the Sec-WebSocket-Extensions of the upgrade; "": none.
	Offer string `json:"offer,omitempty"`
}

// dialTarget is a server to connect to.
type dialTarget struct {
	Addr string `json:"addr"` // IP:port
	Host string `json:"host"` // Host header
}

// event is a message from a worker to the parent.
type event struct {
	Ev       string          `json:"ev"` // hello, progress, reply, error
	PID      int             `json:"pid,omitempty"`
	NoFile   uint64          `json:"nofile,omitempty"` // hello: open-file limit
	Progress *progress       `json:"progress,omitempty"`
	Reply    json.RawMessage `json:"reply,omitempty"`
	Error    string          `json:"error,omitempty"`
}

// progress is a worker's running counters. Receipts, Echoes, Cycles and
// ChurnFailed count from the start of window Win.
type progress struct {
	Win         uint32 `json:"win"`
	Open        int64  `json:"open"`
	DialFails   int64  `json:"dial_fails"`
	Receipts    int64  `json:"receipts"`
	Echoes      int64  `json:"echoes"`
	Cycles      int64  `json:"cycles"`
	ChurnFailed int64  `json:"churn_failed"`
}

// dialReply is a worker's answer to dial.
type dialReply struct {
	OK      int64            `json:"ok"`
	Failed  int64            `json:"failed"`
	Errors  map[string]int64 `json:"errors"`
	Seconds float64          `json:"seconds"`
}

// resetReply is a worker's answer to reset: the new window, and the
// connections open as it starts.
type resetReply struct {
	Win  uint32 `json:"win"`
	Open int64  `json:"open"`
}

// usageReply is a worker's answer to usage: its CPU time so far and its
// peak RSS.
type usageReply struct {
	CPUSeconds  float64 `json:"cpu_s"`
	MaxRSSBytes int64   `json:"max_rss_bytes"`
}

// closeReply is a worker's answer to close.
type closeReply struct {
	Left int `json:"left"` // connections not released by the timeout
}

// Duration is a time.Duration that encodes in JSON as a string ("1.5s").
type Duration time.Duration

// MarshalJSON encodes d as a Go duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON decodes a Go duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("duration: %w", err)
	}
	*d = Duration(v)
	return nil
}

// eventWriter writes events as JSON lines; it is safe for concurrent use.
type eventWriter struct {
	mu  sync.Mutex
	enc *json.Encoder
}

func (w *eventWriter) send(ev event) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.enc.Encode(ev); err != nil {
		return fmt.Errorf("bench worker: write event: %w", err)
	}
	return nil
}

// RunWorker runs a worker: it reads commands from in and writes events to
// out until in ends, and returns the process exit status. Logs go to
// stderr.
func RunWorker(in io.Reader, out io.Writer, stderr io.Writer) int {
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn})).With("worker", os.Getpid())
	if dir := os.Getenv(WorkerProfileEnv); dir != "" {
		stop, err := startCPUProfile(filepath.Join(dir, fmt.Sprintf("worker-%d.pprof", os.Getpid())))
		if err != nil {
			log.Error("cpu profile", "err", err)
			return 1
		}
		defer stop()
	}
	e, err := newEngine(log, 0)
	if err != nil {
		log.Error("start", "err", err)
		return 1
	}
	defer e.close()
	w := &eventWriter{enc: json.NewEncoder(out)}
	var lim unix.Rlimit
	_ = unix.Getrlimit(unix.RLIMIT_NOFILE, &lim)
	if err := w.send(event{Ev: "hello", PID: os.Getpid(), NoFile: uint64(lim.Cur)}); err != nil {
		log.Error("hello", "err", err)
		return 1
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		reportProgress(e, w, stop)
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()

	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), 64<<20)
	for sc.Scan() {
		var cmd command
		if err := json.Unmarshal(sc.Bytes(), &cmd); err != nil {
			_ = w.send(event{Ev: "error", Error: fmt.Sprintf("bad command: %v", err)})
			continue
		}
		reply, err := handleCommand(e, &cmd)
		if err != nil {
			_ = w.send(event{Ev: "error", Error: err.Error()})
			continue
		}
		b, err := json.Marshal(reply)
		if err != nil {
			_ = w.send(event{Ev: "error", Error: fmt.Sprintf("encode reply: %v", err)})
			continue
		}
		if err := w.send(event{Ev: "reply", Reply: b}); err != nil {
			log.Error("reply", "err", err)
			return 1
		}
	}
	if err := sc.Err(); err != nil {
		log.Error("read commands", "err", err)
		return 1
	}
	return 0
}

// reportProgress sends the engine's counters whenever they changed.
func reportProgress(e *engine, w *eventWriter, stop <-chan struct{}) {
	t := time.NewTicker(progressInterval)
	defer t.Stop()
	var last progress
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		p := progress{
			Win:         e.win.Load(),
			Open:        e.open.Load(),
			DialFails:   e.dialFails.Load(),
			Receipts:    e.receipts.Load(),
			Echoes:      e.echoes.Load(),
			Cycles:      e.cycles.Load(),
			ChurnFailed: e.churnFailed.Load(),
		}
		if p == last {
			continue
		}
		last = p
		if w.send(event{Ev: "progress", Progress: &p}) != nil {
			return
		}
	}
}

// handleCommand runs one command and returns its reply.
func handleCommand(e *engine, cmd *command) (any, error) {
	switch cmd.Op {
	case "dial":
		if cmd.Dial == nil {
			return nil, errors.New("dial: no dial spec")
		}
		plan, err := newDialPlan(e, cmd.Dial)
		if err != nil {
			return nil, err
		}
		if plan.kind == kindChurn {
			return nil, errors.New("dial: churn connections are started by churn")
		}
		start := time.Now()
		e.mu.Lock()
		clear(e.errorCounts) // this dial's failures only
		e.mu.Unlock()
		e.dial(plan)
		e.mu.Lock()
		errs := make(map[string]int64, len(e.errorCounts))
		for k, v := range e.errorCounts {
			errs[k] = v
		}
		e.mu.Unlock()
		return dialReply{OK: plan.ok.Load(), Failed: plan.failed.Load(), Errors: errs, Seconds: time.Since(start).Seconds()}, nil
	case "reset":
		e.resetWindow(cmd.Track)
		return resetReply{Win: e.win.Load(), Open: e.open.Load()}, nil
	case "usage":
		cpu, rss := selfUsage()
		return usageReply{CPUSeconds: cpu, MaxRSSBytes: rss}, nil
	case "collect":
		return e.collect(cmd.Expected)
	case "echo_start":
		e.startEcho(cmd.Payload)
		return struct{}{}, nil
	case "echo_stop":
		e.echoRunning.Store(false)
		time.Sleep(100 * time.Millisecond) // let round trips in flight finish
		return e.collect(0)
	case "churn":
		if cmd.Dial == nil || cmd.Concurrency <= 0 {
			return nil, errors.New("churn: needs a dial spec and a concurrency")
		}
		plan, err := newDialPlan(e, cmd.Dial)
		if err != nil {
			return nil, err
		}
		plan.kind, plan.sem, plan.n = kindChurn, nil, 0
		e.runChurn(plan, cmd.Concurrency, time.Duration(cmd.Duration), cmd.Cycles, time.Duration(cmd.Stall))
		return e.collect(0)
	case "close":
		kind, err := parseKind(cmd.Kind)
		if err != nil {
			return nil, err
		}
		return closeReply{Left: e.closeAll(kind, closeTimeout)}, nil
	}
	return nil, fmt.Errorf("unknown command %q", cmd.Op)
}

func parseKind(s string) (connKind, error) {
	switch s {
	case "subscriber":
		return kindSubscriber, nil
	case "echo":
		return kindEcho, nil
	case "churn":
		return kindChurn, nil
	}
	return 0, fmt.Errorf("unknown connection kind %q", s)
}

// newDialPlan turns a dial command into a plan.
func newDialPlan(e *engine, d *dialCommand) (*dialPlan, error) {
	kind, err := parseKind(d.Kind)
	if err != nil {
		return nil, err
	}
	if len(d.Targets) == 0 {
		return nil, errors.New("dial: no target")
	}
	plan := &dialPlan{
		kind:    kind,
		path:    d.Path,
		key:     e.key,
		auth:    d.Auth,
		offer:   d.Offer,
		timeout: time.Duration(d.Timeout),
		n:       int64(d.N),
		sem:     make(chan struct{}, max(1, d.Concurrency)),
		done:    make(chan struct{}),
	}
	for _, t := range d.Targets {
		ap, err := netip.ParseAddrPort(t.Addr)
		if err != nil {
			return nil, fmt.Errorf("dial: target: %w", err)
		}
		pt := planTarget{addr: ap, host: t.Host}
		if d.Auth == nil || d.Auth.Secret == "" {
			token, _ := d.Auth.token("", time.Time{}) // given, not minted: no error
			pt.request = upgradeRequest(t.Host, d.Path, e.key, token, d.Offer)
		}
		plan.targets = append(plan.targets, pt)
	}
	if plan.timeout <= 0 {
		plan.timeout = 10 * time.Second
	}
	for _, s := range d.Sources {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("dial: source: %w", err)
		}
		plan.sources = append(plan.sources, a)
	}
	if plan.n == 0 {
		close(plan.done)
	}
	return plan, nil
}
