package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
)

// These tests run every scenario end to end against fanout in-process, on
// loopback, with the client fleet in two worker processes (this test
// binary re-executed). They check the report's structure and that the
// counts add up; they assert nothing about timing.

func TestIdle(t *testing.T) {
	ts := startServer(t, broadcast.Config{})
	o := testOptions(t, ts.url)
	rep, err := Run(context.Background(), "idle", o, os.Stderr, testLogger())
	require.NoError(t, err)

	assert.Equal(t, "idle", rep.Scenario)
	assert.Equal(t, 2, rep.Fleet.Workers)
	assert.NotEmpty(t, rep.Fleet.Sources)
	require.NotNil(t, rep.Dial)
	assert.EqualValues(t, 300, rep.Dial.Open)
	assert.Zero(t, rep.Dial.Failed)
	// The ramp-up says which side set its rate: the server's CPU (its pid
	// is known) and the workers'.
	assert.Positive(t, rep.Dial.ServerCPUSeconds, "300 handshakes take the server some CPU")
	assert.Positive(t, rep.Dial.ServerMicrosPerConn())
	assert.Equal(t, 2, rep.Dial.Client.Workers)
	assert.Positive(t, rep.Dial.Client.CPUSeconds)
	assert.Positive(t, rep.Dial.Client.Cores)
	var out bytes.Buffer
	rep.WriteSummary(&out)
	assert.Regexp(t, `ramp-up cost   server [0-9.]+ CPU-s \([0-9]+ µs per connection, [0-9.]+ cores\); clients [0-9.]+ cores`, out.String())
	x := rep.Idle
	require.NotNil(t, x)
	assert.EqualValues(t, 300, x.Conns)
	assert.EqualValues(t, 300, x.After.Server.Connections-x.Before.Server.Connections)
	assert.EqualValues(t, 300, x.PerConn.ServerConnDelta)
	for _, s := range []Sample{x.Before, x.After} {
		assert.Positive(t, s.Server.RSSBytes)
		assert.Positive(t, s.Server.HeapBytes)
		assert.Positive(t, s.Server.Goroutines)
		assert.Positive(t, s.Server.OpenFDs)
		assert.Positive(t, s.Kernel.SocketsUsed)
		assert.GreaterOrEqual(t, s.ServerCPU, 0.0)
		assert.Equal(t, "proc", s.MemoryFrom, "the server's pid is known: its memory is read from /proc")
	}
	assert.GreaterOrEqual(t, x.SettleSeconds, 1.0, "two readings a second apart")
	// The test process is both the server and the parent of the fleet,
	// so its fds grow by one per server connection and no more.
	assert.InDelta(t, 1.0, x.PerConn.FDs, 0.05)
	assert.Equal(t, 2, x.Client.Workers)
	assert.Greater(t, x.Client.CPUSeconds, 0.0)
	// The subscribers were closed at the end.
	waitFor(t, func() bool { return ts.srv.Connections() == 0 })
}

func TestFanout(t *testing.T) {
	ts := startServer(t, broadcast.Config{})
	o := testOptions(t, ts.url)
	rep, err := Run(context.Background(), "fanout", o, os.Stderr, testLogger())
	require.NoError(t, err)

	x := rep.Fanout
	require.NotNil(t, x)
	assert.EqualValues(t, 300, x.Subscribers)
	assert.EqualValues(t, 5, x.Messages)
	assert.EqualValues(t, 300*5, x.Expected)
	assert.True(t, x.Balanced(), "receipts + drops + lost must equal N × R: %+v", x.Accounting)
	// In-process, nothing is slow enough to drop.
	assert.EqualValues(t, 300*5, x.Receipts)
	assert.Zero(t, x.Duplicates)
	assert.EqualValues(t, x.Receipts, x.Latency.Count, "every receipt is timed")
	assert.LessOrEqual(t, x.Latency.P50US, x.Latency.P90US)
	assert.LessOrEqual(t, x.Latency.P90US, x.Latency.P99US)
	assert.LessOrEqual(t, x.Latency.P99US, x.Latency.P999US)
	assert.LessOrEqual(t, x.Latency.P999US, x.Latency.MaxUS)
	assert.NotEmpty(t, x.Latency.CDF)
	assert.InDelta(t, 1.0, x.Latency.CDF[len(x.Latency.CDF)-1].Q, 1e-9)
	assert.Len(t, x.LastReceipt.EachUS, 5, "one last-receipt time per message")
	assert.LessOrEqual(t, x.LastReceipt.P50US, x.LastReceipt.MaxUS)
	assert.Equal(t, 2, x.Client.Workers)
	st := ts.hub.Stats()
	assert.EqualValues(t, 5, st.MessagesIn)
	assert.EqualValues(t, 300*5, st.Deliveries, "the server's count agrees")
}

func TestThroughput(t *testing.T) {
	ts := startServer(t, broadcast.Config{})
	o := testOptions(t, ts.url)
	o.Conns = 200
	rep, err := Run(context.Background(), "throughput", o, os.Stderr, testLogger())
	require.NoError(t, err)

	x := rep.Throughput
	require.NotNil(t, x)
	assert.EqualValues(t, 200, x.Subscribers)
	assert.Positive(t, x.Messages)
	assert.Equal(t, x.Subscribers*x.Messages, x.Expected)
	assert.True(t, x.Balanced(), "receipts + drops + lost must equal N × messages: %+v", x.Accounting)
	assert.EqualValues(t, ts.hub.Stats().MessagesIn, x.Messages)
	assert.EqualValues(t, ts.hub.Stats().Deliveries, x.Receipts, "the server's count agrees")
	assert.Positive(t, x.DeliveriesPerSecond)
	assert.Positive(t, x.PublishRate)
	assert.GreaterOrEqual(t, x.ServerCPUSeconds, 0.0, "the server pid is known")
	assert.GreaterOrEqual(t, x.ServerCPUPerMillion, 0.0)
	assert.EqualValues(t, 0, x.ServerDrops)
	assert.EqualValues(t, 0, x.ServerSlowDisconnects)
	assert.Equal(t, x.Receipts, x.Latency.Count)
}

// TestThroughputOpenLoop publishes at a fixed rate, with the drop policy,
// and checks that every delivery is accounted for and that what the
// clients missed is what the server says it dropped.
func TestThroughputOpenLoop(t *testing.T) {
	ts := startServer(t, broadcast.Config{SlowConsumer: broadcast.Drop})
	o := testOptions(t, ts.url)
	o.Conns = 100
	o.Rates = rateList{200}
	o.PayloadBytes = 2000
	rep, err := Run(context.Background(), "throughput", o, os.Stderr, testLogger())
	require.NoError(t, err)
	require.Len(t, rep.Rates, 1)
	x := rep.Rates[0]
	assert.Nil(t, rep.Throughput, "no closed loop")
	assert.EqualValues(t, 200, x.OfferedRate)
	assert.True(t, x.Balanced(), "%+v", x.Accounting)
	assert.EqualValues(t, ts.hub.Stats().Drops, x.ServerDrops)
	assert.Equal(t, x.Drops, x.ServerDrops, "what the clients missed is what the server dropped")
}

// TestOpenLoopSlowPublishes: a server that takes 150 ms to answer each
// publish is still offered the rate, from several publishers, and the
// latency counts from when each message was due, so the wait shows in it.
// One publisher at a time, as the loop used to be, managed 6 of the 40
// messages per second, and its latency, stamped when the publish went out,
// hid the wait (coordinated omission).
func TestOpenLoopSlowPublishes(t *testing.T) {
	ts := startServer(t, broadcast.Config{})
	target, err := url.Parse("http://" + strings.TrimPrefix(ts.url, "ws://"))
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(150 * time.Millisecond)
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(slow.Close)

	o := testOptions(t, ts.url)
	o.Conns = 50
	o.PublishURL = slow.URL + "/publish"
	o.Rates = rateList{40, 80}
	o.Duration = time.Second
	rep, err := Run(context.Background(), "throughput", o, os.Stderr, testLogger())
	require.NoError(t, err)
	require.Len(t, rep.Rates, 2)
	for i, x := range rep.Rates {
		assert.EqualValues(t, o.Rates[i], x.OfferedRate)
		assert.EqualValues(t, o.Rates[i], x.Messages, "every message due in the second was published")
		assert.Zero(t, x.PublishErrors)
		assert.False(t, x.MissedRate, "%+v", x)
		assert.Greater(t, x.Publishers, 1, "a slow publish starts more publishers")
		assert.True(t, x.Balanced(), "%+v", x.Accounting)
		assert.GreaterOrEqual(t, x.Latency.P50US, int64(150_000), "latency counts from when the message was due")
	}
}

func TestEcho(t *testing.T) {
	ts := startServer(t, broadcast.Config{})
	o := testOptions(t, ts.url)
	o.Size = 300
	rep, err := Run(context.Background(), "echo", o, os.Stderr, testLogger())
	require.NoError(t, err)

	x := rep.Echo
	require.NotNil(t, x)
	assert.Equal(t, 20, x.Concurrency)
	assert.Equal(t, 300, x.Size)
	assert.Positive(t, x.RoundTrips)
	assert.Zero(t, x.Errors)
	assert.Equal(t, x.RoundTrips, x.Latency.Count, "every round trip is timed")
	assert.Positive(t, x.PerSecond)
	waitFor(t, func() bool { return ts.srv.Connections() == 0 })
}

func TestChurn(t *testing.T) {
	ts := startServer(t, broadcast.Config{})
	o := testOptions(t, ts.url)
	o.Concurrency = 10
	rep, err := Run(context.Background(), "churn", o, os.Stderr, testLogger())
	require.NoError(t, err)

	x := rep.Churn
	require.NotNil(t, x)
	assert.Equal(t, 10, x.Concurrency)
	assert.Positive(t, x.Cycles)
	assert.Zero(t, x.Failed, "errors: %v", x.Errors)
	assert.Positive(t, x.PerSecond)
	assert.Zero(t, x.Delta.Connections, "every churned connection is gone")
	assert.Positive(t, x.Before.Server.OpenFDs)
	assert.Positive(t, x.After.Server.Goroutines)
	accepted := ts.srv.Stats().Upgrades
	assert.GreaterOrEqual(t, int64(accepted), x.Cycles, "each cycle is an upgrade")
}

// TestChurnCycles runs churn for a number of cycles instead of a time:
// exactly that many complete, shared out among the workers, and the server
// is back where it was, read once settled.
func TestChurnCycles(t *testing.T) {
	ts := startServer(t, broadcast.Config{})
	o := testOptions(t, ts.url)
	o.Concurrency = 10
	o.Cycles = 500
	o.Duration = time.Millisecond // were it the end of the run, far fewer cycles would be done
	rep, err := Run(context.Background(), "churn", o, os.Stderr, testLogger())
	require.NoError(t, err)

	assert.EqualValues(t, 500, rep.Params.Cycles)
	x := rep.Churn
	require.NotNil(t, x)
	assert.EqualValues(t, 500, x.Requested)
	assert.EqualValues(t, 500, x.Cycles, "exactly --cycles cycles")
	assert.Zero(t, x.Failed, "errors: %v", x.Errors)
	assert.EqualValues(t, 500, ts.srv.Stats().Upgrades, "one upgrade per cycle, and no more")
	assert.True(t, x.Settled, "the server settled after the cycles")
	assert.True(t, x.HeapAfterGC, "the test server serves /debug/pprof/, so heap figures follow a GC")
	assert.Zero(t, x.Delta.Connections, "every churned connection is gone")
	assert.Zero(t, x.Delta.Clients, "the hub serves no client")
	assert.Zero(t, x.Delta.Subscriptions, "the hub holds no subscription")
	assert.Zero(t, x.After.Server.Subscriptions)
	for _, s := range []Sample{x.Before, x.After} {
		assert.Positive(t, s.Server.OpenFDs)
		assert.Positive(t, s.Server.Goroutines)
		assert.Positive(t, s.Server.HeapBytes)
	}
	t.Logf("churn: %d cycles, fds %d -> %d, goroutines %d -> %d, heap %d -> %d", x.Cycles,
		x.Before.Server.OpenFDs, x.After.Server.OpenFDs, x.Before.Server.Goroutines, x.After.Server.Goroutines,
		x.Before.Server.HeapBytes, x.After.Server.HeapBytes)

	var out bytes.Buffer
	rep.WriteSummary(&out)
	for _, want := range []string{"500 cycles requested", "cycles         500 (", "server open fds", "server goroutines",
		"hub subscriptions", "server Go heap (GC'd)", "once two readings in a row agreed"} {
		assert.Contains(t, out.String(), want)
	}
	t.Logf("summary:\n%s", out.String())
}

// TestMainJSON runs the command line, as "fanout bench fanout --json FILE"
// does, and reads the JSON back.
func TestMainJSON(t *testing.T) {
	ts := startServer(t, broadcast.Config{})
	path := filepath.Join(t.TempDir(), "report.json")
	var stdout, stderr bytesBuffer
	code := Main([]string{"fanout", "--url", ts.url, "-n", "100", "--repeat", "3", "--workers", "2", "--quiet", "--json", path}, &stdout, &stderr)
	require.Equal(t, 0, code, "stderr: %s", stderr.String())
	assert.Contains(t, stdout.String(), "fanout: 3 messages, each to 100 subscribers")
	assert.Contains(t, stdout.String(), "every delivery accounted for")

	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var rep Report
	require.NoError(t, json.Unmarshal(b, &rep))
	require.NotNil(t, rep.Fanout)
	assert.EqualValues(t, 300, rep.Fanout.Receipts)
	var generic map[string]any
	require.NoError(t, json.Unmarshal(b, &generic))
	for _, k := range []string{"scenario", "url", "params", "server", "fleet", "dial", "fanout"} {
		assert.Contains(t, generic, k)
	}
	f := generic["fanout"].(map[string]any)
	for _, k := range []string{"subscribers", "messages", "expected", "receipts", "drops", "lost_to_disconnect", "latency", "last_receipt", "client"} {
		assert.Contains(t, f, k)
	}
}

// TestCompare runs compare with fanout and a reference server that does
// not exist, which is skipped with a message. Building the fanout binary
// takes most of a minute on a cold cache, so this test binary stands in
// for it (see TestMain); the peers' build path is the real one.
func TestCompare(t *testing.T) {
	t.Setenv(testServeEnv, "1")
	root, err := findModuleRoot()
	require.NoError(t, err)
	out := t.TempDir()
	o := testOptions(t, "")
	o.build = func(ctx context.Context, src, dir, name string, stderr io.Writer) (string, error) {
		if name == "fanout" {
			return os.Executable()
		}
		return buildServer(ctx, src, dir, name, stderr)
	}
	o.Conns = 100
	o.Repeat = 3
	o.Servers = "fanout,nosuchpeer"
	o.Src = root
	o.Out = out
	o.ServerPID = 0
	var stdout, stderr bytesBuffer
	err = Compare(context.Background(), o, &stdout, lockedWriter(&stderr), testLogger())
	require.NoError(t, err, "stderr: %s", stderr.String())

	assert.Contains(t, stderr.String(), "skipping nosuchpeer")
	table := stdout.String()
	assert.Contains(t, table, "| server | RSS/conn | anon RSS/conn | heap/conn | goroutines | handshakes/s | server CPU per handshake | fanout p50 | fanout p99 | fanout max | last receipt |")
	assert.Regexp(t, `\| fanout \| [^|]+ \| [^|]+ \| [^|]+ \| [0-9]+ \| [0-9]+ \| [0-9]+ µs \| `, table, "the ramp-up's rate and the server's CPU per handshake")
	assert.Contains(t, table, "| server | offered msg/s | published msg/s | deliveries/s | server CPU-s per M deliveries | latency p50 | p99 | max | drops |")
	assert.Contains(t, table, "| fanout | 20 | ")
	assert.Contains(t, table, "| fanout | 400 | ")
	assert.Contains(t, table, "| fanout | ")
	assert.Contains(t, table, "| nosuchpeer | ")

	b, err := os.ReadFile(filepath.Join(out, "compare.json"))
	require.NoError(t, err)
	var cmp Comparison
	require.NoError(t, json.Unmarshal(b, &cmp))
	require.Len(t, cmp.Servers, 2)
	f := cmp.Servers[0]
	assert.Equal(t, "fanout", f.Name)
	assert.Empty(t, f.Error)
	require.NotNil(t, f.Report)
	assert.Positive(t, f.Report.Server.PID)
	require.NotNil(t, f.Report.Idle)
	require.NotNil(t, f.Report.Fanout)
	require.Len(t, f.Report.Rates, 3, "the default rates, "+defaultCompareRates)
	assert.Nil(t, f.Report.Throughput, "no closed loop")
	assert.EqualValues(t, 100, f.Report.Idle.Conns)
	assert.True(t, f.Report.Fanout.Balanced())
	assert.EqualValues(t, 300, f.Report.Fanout.Expected)
	for _, x := range f.Report.Rates {
		assert.True(t, x.Balanced())
		assert.GreaterOrEqual(t, x.ServerCPUPerMillion, 0.0)
	}
	assert.NotEmpty(t, cmp.Servers[1].Skipped)
	assert.Nil(t, cmp.Servers[1].Report)

	png, err := os.ReadFile(filepath.Join(out, "compare.png"))
	require.NoError(t, err)
	assert.Equal(t, "\x89PNG", string(png[:4]))
}
