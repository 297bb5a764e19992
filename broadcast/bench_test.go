package broadcast_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// The subscriber side of the fan-out benchmark runs in a child process (this
// test binary again, see TestMain), so that the server
// process holds only its own fds: one process holds fewer than 20000.
const (
	envHelperAddr = "FANOUT_BENCH_SUBSCRIBE_ADDR"
	envHelperN    = "FANOUT_BENCH_SUBSCRIBERS"
)

// TestMain runs this test binary as BenchmarkPublish's subscriber process
// when the environment says so, and as the tests otherwise.
func TestMain(m *testing.M) {
	if addr := os.Getenv(envHelperAddr); addr != "" {
		if err := holdSubscribers(addr, os.Getenv(envHelperN)); err != nil {
			fmt.Fprintln(os.Stderr, "subscribers:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// holdSubscribers is the child process of BenchmarkPublish. It holds n
// subscribers of topic "bench" on addr, reads and discards what they
// receive, and returns when its stdin closes.
func holdSubscribers(addr, count string) error {
	n, err := strconv.Atoi(count)
	if err != nil {
		return fmt.Errorf("subscriber count: %w", err)
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			_ = c.Close()
		}
	}()
	for i := range n {
		// Spread over source addresses so ports never run out.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			return err
		}
		conns = append(conns, c)
		_, err = fmt.Fprintf(c, "GET /ws?topics=bench HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		if err != nil {
			return err
		}
		br := bufio.NewReaderSize(c, 512)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusSwitchingProtocols {
			return fmt.Errorf("upgrade: %s", resp.Status)
		}
		go func() { _, _ = io.Copy(io.Discard, io.MultiReader(br, c)) }()
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return nil
}

// BenchmarkPublish publishes 64-byte messages to 10,000 subscribers over
// loopback and reports the cost per delivery (a message queued to one
// subscriber and written to its socket) and allocations per delivery.
func BenchmarkPublish(b *testing.B) {
	const subscribers = 10000
	hub := broadcast.New(broadcast.Config{SlowConsumer: broadcast.Drop})
	srv, err := wsconn.NewServer(wsconn.Config{
		MaxQueueBytes: 4 << 20,
		Upgrade:       func(r *wsconn.Request) (wsconn.Handler, error) { return hub.Upgrade(r) },
	})
	require.NoError(b, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	go func() { _ = srv.Serve(ln) }()
	defer func() {
		hub.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = srv.Shutdown(ctx)
	}()

	child := exec.Command(os.Args[0])
	child.Env = append(os.Environ(), envHelperAddr+"="+ln.Addr().String(), envHelperN+"="+strconv.Itoa(subscribers))
	stdin, err := child.StdinPipe()
	require.NoError(b, err)
	child.Stderr = os.Stderr
	require.NoError(b, child.Start())
	var once sync.Once
	stop := func() { once.Do(func() { _ = stdin.Close(); _ = child.Wait() }) }
	defer stop()
	require.Eventually(b, func() bool { return hub.Stats().Subscriptions == subscribers },
		2*time.Minute, 10*time.Millisecond, "subscribers did not all subscribe")

	data := []byte(`{"payload":"0123456789012345678901234567890123456789"}`)
	before := hub.Stats().Deliveries
	var ms0, ms1 runtime.MemStats
	runtime.ReadMemStats(&ms0)
	b.ResetTimer()
	for range b.N {
		if _, err := hub.Publish("bench", data); err != nil {
			b.Fatal(err)
		}
	}
	want := before + uint64(b.N)*subscribers
	for st := hub.Stats(); st.Deliveries+st.Drops < want; st = hub.Stats() {
		time.Sleep(time.Millisecond)
	}
	runtime.ReadMemStats(&ms1)
	for srv.QueuedBytes() > 0 { // written, not just queued
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	st := hub.Stats()
	delivered := st.Deliveries - before
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(delivered), "ns/delivery")
	b.ReportMetric(float64(ms1.Mallocs-ms0.Mallocs)/float64(delivered), "allocs/delivery")
	b.ReportMetric(float64(st.Drops), "drops")
}
