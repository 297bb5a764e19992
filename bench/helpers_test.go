package bench

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// TestMain lets the test binary act as a bench worker: the harness starts
// workers by re-executing its own executable, which under go test is this
// binary, with WorkerEnv set.
//
// With testServeEnv set, the binary is instead a stand-in for the fanout
// binary that compare builds: "serve --listen ADDR ..." serves fanout
// in-process until SIGTERM.
func TestMain(m *testing.M) {
	if IsWorker() {
		os.Exit(RunWorker(os.Stdin, os.Stdout, os.Stderr))
	}
	if os.Getenv(testServeEnv) != "" {
		os.Exit(serveForCompare(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// testServeEnv makes the test binary act as "fanout serve".
const testServeEnv = "FANOUT_BENCH_TEST_SERVE"

// serveForCompare serves fanout on the --listen address in args until
// SIGTERM or SIGINT.
func serveForCompare(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:8080", "")
	fs.String("log-level", "", "")
	fs.String("shutdown-timeout", "", "")
	fs.Bool("no-auth", false, "")
	if len(args) > 0 && args[0] == "serve" {
		args = args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	_, stop, err := newTestServer(*listen, broadcast.Config{})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	stop()
	return 0
}

// testServer is fanout in-process: a wsconn.Server serving a broadcast.Hub
// on loopback, wired as "fanout serve --pprof" wires them, with /stats in
// fanout's nested shape.
type testServer struct {
	hub *broadcast.Hub
	srv *wsconn.Server
	url string // ws://127.0.0.1:PORT
}

func startServer(t testing.TB, hcfg broadcast.Config) *testServer {
	t.Helper()
	ts, stop, err := newTestServer("127.0.0.1:0", hcfg)
	require.NoError(t, err)
	t.Cleanup(stop)
	return ts
}

// newTestServer starts fanout in-process on addr; stop closes the hub and
// shuts the server down, as on SIGTERM.
func newTestServer(addr string, hcfg broadcast.Config) (ts *testServer, stop func(), err error) {
	quiet := slog.New(slog.DiscardHandler)
	hcfg.Logger = quiet
	hub := broadcast.New(hcfg)
	ts = &testServer{hub: hub}
	mux := http.NewServeMux()
	mux.Handle("/publish", hub.PublishHandler())
	// As "fanout serve --pprof": churn asks for a GC through it.
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{
			"server":  ts.srv.Stats(),
			"hub":     hub.Stats(),
			"process": testProcessStats(),
		})
	})
	srv, err := wsconn.NewServer(wsconn.Config{
		Upgrade: func(r *wsconn.Request) (wsconn.Handler, error) {
			switch r.Path {
			case "/ws":
				return hub.Upgrade(r)
			case "/echo":
				return wsconn.Echo{}, nil
			}
			return nil, wsconn.Reject(http.StatusNotFound, "not found")
		},
		HTTP:   mux,
		Logger: quiet,
	})
	if err != nil {
		hub.Close()
		return nil, nil, err
	}
	ts.srv = srv
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		hub.Close()
		_ = srv.Close()
		return nil, nil, err
	}
	go func() { _ = srv.Serve(ln) }()
	ts.url = "ws://" + ln.Addr().String()
	return ts, func() {
		hub.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}, nil
}

// testProcessStats is the "process" object of fanout's /stats, from /proc.
func testProcessStats() map[string]any {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	fds := -1
	if e, err := os.ReadDir("/proc/self/fd"); err == nil {
		fds = len(e)
	}
	rss := int64(-1)
	if b, err := os.ReadFile("/proc/self/statm"); err == nil {
		var size, res int64
		if _, err := fmtSscan(string(b), &size, &res); err == nil {
			rss = res * int64(os.Getpagesize())
		}
	}
	return map[string]any{
		"rss_bytes":     rss,
		"go_heap_bytes": ms.HeapAlloc,
		"goroutines":    runtime.NumGoroutine(),
		"open_fds":      fds,
	}
}

// testOptions returns the flags' defaults for a small, quick run against
// url with two workers.
func testOptions(t testing.TB, url string) *Options {
	t.Helper()
	var o Options
	fs := flag.NewFlagSet("test", flag.ContinueOnError)
	o.register(fs)
	require.NoError(t, fs.Parse(nil))
	o.URL = url
	o.Workers = 2
	o.Conns = 300
	o.Repeat = 5
	o.Duration = 500 * time.Millisecond
	o.Concurrency = 20
	o.Settle = 100 * time.Millisecond
	o.Timeout = 15 * time.Second // a deadline for a hang, never a latency assertion
	o.ServerPID = os.Getpid()
	o.Quiet = true
	return &o
}

func testLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func fmtSscan(s string, a ...any) (int, error) { return fmt.Sscan(s, a...) }
