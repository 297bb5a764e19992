package bench

import (
	"bytes"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type bytesBuffer = bytes.Buffer

// waitFor polls cond for up to 15 s: a deadline for a hang, not a timing
// assertion.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 15 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestParseServerStats(t *testing.T) {
	nested := `{"server":{"connections":12,"accepted":40},"hub":{"deliveries":7,"drops":2,"slow_consumer_disconnects":1,"clients":4,"subscriptions":5},
		"queued_bytes":0,"process":{"rss_bytes":1000,"rss_anon_bytes":600,"go_heap_bytes":500,"goroutines":9,"open_fds":20}}`
	s, err := parseServerStats([]byte(nested))
	require.NoError(t, err)
	assert.Equal(t, ServerStats{Connections: 12, RSSBytes: 1000, RSSAnonBytes: 600, HeapBytes: 500, Goroutines: 9, OpenFDs: 20, Deliveries: 7, Drops: 2, SlowDisconnects: 1, Clients: 4, Subscriptions: 5, AllConnections: -1}, s)

	withWebSockets := `{"server":{"connections":12,"websockets":10},"process":{"open_fds":20}}`
	s, err = parseServerStats([]byte(withWebSockets))
	require.NoError(t, err)
	assert.EqualValues(t, 10, s.Connections, "fanout's WebSockets, as the peers count")
	assert.EqualValues(t, 12, s.AllConnections)

	flat := `{"connections":3,"rss_bytes":2048,"go_heap_bytes":1024,"goroutines":8,"open_fds":11}`
	s, err = parseServerStats([]byte(flat))
	require.NoError(t, err)
	assert.Equal(t, ServerStats{Connections: 3, RSSBytes: 2048, RSSAnonBytes: -1, HeapBytes: 1024, Goroutines: 8, OpenFDs: 11, Deliveries: -1, Drops: -1, SlowDisconnects: -1, Clients: -1, Subscriptions: -1, AllConnections: -1}, s)

	_, err = parseServerStats([]byte(`[1]`))
	assert.Error(t, err)
}

func TestShareOut(t *testing.T) {
	assert.Equal(t, []int64{100, 100}, shareOut(200, []int{50, 50}))
	assert.Equal(t, []int64{4, 3, 3}, shareOut(10, []int{1, 1, 1}), "the remainder goes to the first")
	assert.Equal(t, []int64{0, 2, 0, 1}, shareOut(3, []int{0, 2, 0, 1}), "nothing for a worker with no slot")
	assert.Equal(t, []int64{1, 0}, shareOut(1, []int{1, 1}), "fewer cycles than workers")
	assert.Equal(t, []int64{0, 0}, shareOut(0, []int{3, 3}), "0: no limit")
}

func TestFrames(t *testing.T) {
	payload := []byte(strings.Repeat("abc", 100))
	for _, p := range [][]byte{nil, payload[:5], payload, bytes.Repeat(payload, 300)} {
		f := appendClientFrame(nil, ws.OpBinary, p, [4]byte{1, 2, 3, 4})
		h, ok := parseFrameHeader(f)
		require.True(t, ok)
		assert.True(t, h.fin)
		assert.True(t, h.masked)
		assert.Equal(t, ws.OpBinary, h.op)
		require.EqualValues(t, len(p), h.length)
		got := append([]byte(nil), f[h.size:]...)
		ws.Cipher(got, [4]byte{1, 2, 3, 4}, 0)
		assert.Equal(t, len(p), len(got))
		assert.True(t, bytes.Equal(p, got))
		// Every prefix of the header is incomplete, not an error.
		for i := range h.size {
			_, ok := parseFrameHeader(f[:i])
			assert.False(t, ok)
		}
	}
}

func TestParseBroadcast(t *testing.T) {
	seq, ts, ok := parseBroadcast([]byte(`{"topic":"bench","seq":42,"data":{"t":1700000000123456789}}`))
	assert.True(t, ok)
	assert.EqualValues(t, 42, seq)
	assert.EqualValues(t, 1700000000123456789, ts)

	seq, ts, ok = parseBroadcast([]byte(`{"data": {"p":"xx", "t": 5}, "seq": 7, "topic":"a"}`))
	assert.True(t, ok)
	assert.EqualValues(t, 7, seq)
	assert.EqualValues(t, 5, ts)

	_, _, ok = parseBroadcast([]byte(`{"type":"subscribed","topic":"bench","seq":41}`))
	assert.False(t, ok, "a control reply is no message, though it has a seq")

	seq, _, ok = parseBroadcast([]byte(`{"seq":3,"data":{"type":"x"}}`))
	assert.True(t, ok, "a type key inside data is data")
	assert.EqualValues(t, 3, seq)

	_, _, ok = parseBroadcast([]byte(`{"type":"error"}`))
	assert.False(t, ok)

	d := broadcastData(123, 100)
	assert.Len(t, d, 100)
	_, ts, _ = parseBroadcast(append(append([]byte(`{"seq":1,"data":`), d...), '}'))
	assert.EqualValues(t, 123, ts)
}

func TestParseUpgradeResponse(t *testing.T) {
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	accept := acceptKey(key)
	assert.Equal(t, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", accept, "RFC 6455's example")
	resp := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " + accept + "\r\n\r\n"
	n, err := parseUpgradeResponse([]byte(resp+"\x81\x00"), accept)
	require.NoError(t, err)
	assert.Equal(t, len(resp), n)

	n, err = parseUpgradeResponse([]byte(resp[:20]), accept)
	assert.NoError(t, err)
	assert.Zero(t, n, "incomplete")

	_, err = parseUpgradeResponse([]byte("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"), accept)
	assert.ErrorIs(t, err, errHandshake)
	assert.Contains(t, err.Error(), "404")

	_, err = parseUpgradeResponse([]byte(strings.Replace(resp, accept, "bogus", 1)), accept)
	assert.ErrorIs(t, err, errHandshake)
}

func TestPlanFleetLimits(t *testing.T) {
	o := testOptions(t, "ws://127.0.0.1:1")
	o.Workers = 0
	tg := target{loopback: true}
	tg.addr = mustAddrPort("127.0.0.1:1")

	p, err := planFleet(o, tg, 1000)
	require.NoError(t, err)
	assert.Equal(t, 1, p.Workers)
	assert.Len(t, p.Sources, 1)
	assert.Equal(t, "127.0.0.2", p.Sources[0])

	p, err = planFleet(o, tg, 15000)
	require.NoError(t, err)
	assert.Equal(t, 4, p.Workers, "one process would hold 15,000, but dials too slowly alone")
	p, err = planFleet(o, tg, 5000)
	require.NoError(t, err)
	assert.Equal(t, 3, p.Workers, "one per 2,000")

	o.MaxConnsPerWorker = 300
	p, err = planFleet(o, tg, 1000)
	require.NoError(t, err)
	assert.Equal(t, 4, p.Workers, "ceil(1000 / 300)")
	assert.Equal(t, 250, p.ConnsPerWorker)

	// One worker cannot hold more than its open-file limit.
	o.MaxConnsPerWorker = 18000
	o.Workers = 1
	_, err = planFleet(o, tg, int(p.OpenFileLimit)+1)
	var le *limitError
	require.ErrorAs(t, err, &le)
	assert.Contains(t, err.Error(), "RLIMIT_NOFILE")
	assert.Contains(t, err.Error(), "--workers")

	// One source address cannot have more connections than ports.
	o.Workers = 0
	o.Sources = 1
	_, err = planFleet(o, tg, p.PortsPerSource+1)
	require.ErrorAs(t, err, &le)
	assert.Contains(t, err.Error(), "ip_local_port_range")
	assert.Contains(t, err.Error(), "--sources 2")
}

func TestHelp(t *testing.T) {
	var out, errOut bytes.Buffer
	assert.Equal(t, 0, Main([]string{"--help"}, &out, &errOut))
	for _, s := range append(scenarios, "compare", "--url", "-n", "--repeat", "--duration", "--rate", "--window",
		"-c", "--size", "--workers", "--sources", "--server-pid", "--json", "--quiet", "--servers") {
		assert.Contains(t, out.String(), strings.TrimLeft(s, "-"))
	}
	assert.Equal(t, 2, Main([]string{"nosuch"}, &out, &errOut))
	assert.Contains(t, errOut.String(), "unknown scenario")
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// TestJoinedMessages: messages joined into one text message with newlines,
// as gorilla's chat example sends what is queued (the gorillahub peer),
// each count as a receipt with its own latency; a seq seen before is a
// duplicate.
func TestJoinedMessages(t *testing.T) {
	e := &engine{}
	c := &conn{e: e, plan: &dialPlan{kind: kindSubscriber}}
	s := &slot{hist: newHistogram()}
	msg := func(seq int) string {
		return fmt.Sprintf(`{"topic":"bench","seq":%d,"data":%s}`, seq, broadcastData(1000, 64))
	}
	joined := []byte(msg(1) + "\n" + msg(2) + "\n" + msg(3))
	require.True(t, c.message(s, ws.OpText, joined, 1000+5000_000))
	assert.EqualValues(t, 3, e.receipts.Load())
	assert.EqualValues(t, 3, c.recv.Load())
	assert.EqualValues(t, 3, s.hist.TotalCount())
	assert.EqualValues(t, 3, c.last)

	require.True(t, c.message(s, ws.OpText, []byte(msg(3)+"\n"+msg(4)), 1000+5000_000))
	assert.EqualValues(t, 4, e.receipts.Load())
	assert.EqualValues(t, 1, e.duplicates.Load())
}

// TestProcessMemory reads this process's memory from /proc/PID/status.
func TestProcessMemory(t *testing.T) {
	rss, anon, err := processMemory(os.Getpid())
	require.NoError(t, err)
	assert.Positive(t, anon)
	assert.Greater(t, rss, anon, "RSS holds the binary's pages besides the anonymous ones")
	_, _, err = processMemory(-1)
	assert.Error(t, err)
}

// TestPlottingOutOfModule: the chart's plotting library is not a dependency
// of the fanout module (bench/chart is a module of its own), so neither the
// fanout binary nor the module's go test ./... builds it.
func TestPlottingOutOfModule(t *testing.T) {
	root, err := findModuleRoot()
	require.NoError(t, err)
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	require.NoError(t, err)
	assert.NotContains(t, string(mod), "gonum.org/v1/plot")
	chart, err := os.ReadFile(filepath.Join(root, "bench", "chart", "go.mod"))
	require.NoError(t, err)
	assert.Contains(t, string(chart), "module github.com/fanout/fanout/bench/chart")
	assert.Contains(t, string(chart), "gonum.org/v1/plot")
}
