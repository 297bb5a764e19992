package peers_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// servers are the reference servers, each a command in the directory of its
// name.
var servers = []string{"gorillahub", "gobwasgoroutine", "nbio", "gws"}

// ioTimeout bounds every wait of the tests.
const ioTimeout = 10 * time.Second

// TestPeers builds every server, starts it on a free loopback port and checks
// the contract the load harness relies on.
func TestPeers(t *testing.T) {
	// The servers must be built to be checked: no go command is a failure.
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go command builds the servers under test: %v", err)
	}
	bindir := t.TempDir()
	for _, name := range servers {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			bin := filepath.Join(bindir, name)
			args := append([]string{"build", "-o", bin}, buildFlags(name)...)
			build := exec.Command(gobin, append(args, "./"+name)...)
			if out, err := build.CombinedOutput(); err != nil {
				t.Fatalf("go build ./%s: %v\n%s", name, err, out)
			}
			p := start(t, bin)

			t.Run("healthz", func(t *testing.T) { testHealthz(t, p) })
			t.Run("publish", func(t *testing.T) { testPublish(t, p) })
			t.Run("publish-errors", func(t *testing.T) { testPublishErrors(t, p) })
			t.Run("echo", func(t *testing.T) { testEcho(t, p, name) })
			t.Run("stats", func(t *testing.T) { testStats(t, p, name) })
			t.Run("sigterm", func(t *testing.T) { testSigterm(t, p) })
		})
	}
}

// peer is a running server.
type peer struct {
	addr   string
	cmd    *exec.Cmd
	exited chan struct{} // closed when the process has exited
	err    error         // of Wait; read after exited is closed
	log    *syncBuffer   // its stderr and stdout
}

func (p *peer) url(path string) string { return "http://" + p.addr + path }

func (p *peer) wsURL(path string) string { return "ws://" + p.addr + path }

// start runs bin on a free loopback port and waits until /healthz answers.
// The process is killed at the end of the test if it still runs.
func start(t *testing.T, bin string) *peer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	p := &peer{addr: addr, exited: make(chan struct{}), log: new(syncBuffer)}
	p.cmd = exec.Command(bin, "--listen", addr)
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = p.cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() {
			t.Logf("server output:\n%s", p.log.String())
		}
	})

	deadline := time.Now().Add(ioTimeout)
	for {
		select {
		case <-p.exited:
			t.Fatalf("server exited at start: %v", p.err)
		default:
		}
		resp, err := http.Get(p.url("/healthz"))
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return p
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("server not healthy after %v: %v", ioTimeout, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func testHealthz(t *testing.T, p *peer) {
	status, body := get(t, p.url("/healthz"))
	if status != http.StatusOK || strings.TrimSpace(body) != "ok" {
		t.Fatalf("GET /healthz = %d %q, want 200 ok", status, body)
	}
}

func testPublish(t *testing.T, p *peer) {
	subT := dial(t, p.wsURL("/ws?topics=t"))
	subU := dial(t, p.wsURL("/ws?topics=u"))
	subTU := dial(t, p.wsURL("/ws?topics=t,u"))
	waitConnections(t, p, 3)

	publish(t, p, "t", `{"x":1}`, 1)
	wantMessage(t, subT, `{"topic":"t","seq":1,"data":{"x":1}}`)
	wantMessage(t, subTU, `{"topic":"t","seq":1,"data":{"x":1}}`)

	// Another topic numbers its messages on its own, and reaches only its
	// subscribers: the next message subT gets is t's second.
	publish(t, p, "u", `[1, "two", null]`, 1)
	wantMessage(t, subU, `{"topic":"u","seq":1,"data":[1, "two", null]}`)
	wantMessage(t, subTU, `{"topic":"u","seq":1,"data":[1, "two", null]}`)

	for i := 2; i <= 20; i++ {
		publish(t, p, "t", fmt.Sprintf(`{"x":%d}`, i), uint64(i))
	}
	for i := 2; i <= 20; i++ {
		want := fmt.Sprintf(`{"topic":"t","seq":%d,"data":{"x":%d}}`, i, i)
		wantMessage(t, subT, want)
		wantMessage(t, subTU, want)
	}

	// Closed subscribers are forgotten.
	subT.Close()
	subU.Close()
	subTU.Close()
	waitConnections(t, p, 0)
	publish(t, p, "t", `"nobody"`, 21)
}

func testPublishErrors(t *testing.T, p *peer) {
	for _, tc := range []struct {
		method, path, body string
		status             int
	}{
		{http.MethodPost, "/publish?topic=t", `{"x":`, http.StatusBadRequest},
		{http.MethodPost, "/publish?topic=t", ``, http.StatusBadRequest},
		{http.MethodPost, "/publish", `{"x":1}`, http.StatusBadRequest},
		{http.MethodPost, "/publish?topic=a%20b", `{"x":1}`, http.StatusBadRequest},
		{http.MethodPost, "/publish?topic=t", strings.Repeat(" ", 1<<20+1) + "1", http.StatusRequestEntityTooLarge},
		{http.MethodGet, "/publish?topic=t", ``, http.StatusMethodNotAllowed},
	} {
		req, err := http.NewRequest(tc.method, p.url(tc.path), strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", tc.method, tc.path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("%s %s with %.20q = %d, want %d", tc.method, tc.path, tc.body, resp.StatusCode, tc.status)
		}
	}

	// A /ws upgrade needs a valid topic.
	for _, path := range []string{"/ws", "/ws?topics=", "/ws?topics=a%20b"} {
		c, resp, err := websocket.DefaultDialer.Dial(p.wsURL(path), nil)
		if err == nil {
			c.Close()
			t.Errorf("upgrade of %s succeeded, want a refusal", path)
			continue
		}
		if resp == nil || resp.StatusCode == http.StatusSwitchingProtocols {
			t.Errorf("upgrade of %s: %v, want an HTTP error status", path, err)
		}
	}
}

// emptyMessageDropped lists the servers whose library never hands a
// zero-length data message to the application: nbio v1.6.9's Conn.Parse
// calls OnMessage only for a message with a payload.
var emptyMessageDropped = map[string]bool{"nbio": true}

func testEcho(t *testing.T, p *peer, name string) {
	c := dial(t, p.wsURL("/echo"))
	defer c.Close()
	pongs := make(chan string, 1)
	c.SetPongHandler(func(data string) error {
		pongs <- data
		return nil
	})
	big := bytes.Repeat([]byte("0123456789abcdef"), 64<<10/16)
	for _, m := range []struct {
		typ  int
		data []byte
	}{
		{websocket.TextMessage, []byte("hello")},
		{websocket.BinaryMessage, []byte{0, 1, 2, 0xfe, 0xff}},
		{websocket.TextMessage, []byte("héllo, 世界")},
		{websocket.BinaryMessage, big},
		{websocket.TextMessage, []byte{}},
	} {
		if len(m.data) == 0 && emptyMessageDropped[name] {
			t.Logf("%s: not checking the echo of an empty message, which the library drops", name)
			continue
		}
		if err := c.WriteMessage(m.typ, m.data); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(ioTimeout))
		typ, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("echo of a %d-byte message: %v", len(m.data), err)
		}
		if typ != m.typ || !bytes.Equal(data, m.data) {
			t.Fatalf("echo of type %d %.40q = type %d %.40q", m.typ, m.data, typ, data)
		}
	}

	// A ping is answered with a pong, read while reading the next echo.
	if err := c.WriteControl(websocket.PingMessage, []byte("p1"), time.Now().Add(ioTimeout)); err != nil {
		t.Fatal(err)
	}
	if err := c.WriteMessage(websocket.TextMessage, []byte("after ping")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, data, err := c.ReadMessage(); err != nil || string(data) != "after ping" {
		t.Fatalf("echo after ping = %q, %v", data, err)
	}
	select {
	case <-pongs:
	default:
		t.Error("no pong for a ping")
	}
}

func testStats(t *testing.T, p *peer, name string) {
	echo := dial(t, p.wsURL("/echo"))
	defer echo.Close()
	sub := dial(t, p.wsURL("/ws?topics=s"))
	defer sub.Close()
	waitConnections(t, p, 2)

	st := stats(t, p)
	for _, key := range []string{"connections", "rss_bytes", "go_heap_bytes", "goroutines", "open_fds"} {
		v, ok := st[key].(float64)
		if !ok {
			t.Errorf("stats[%q] = %v (%T), want a number", key, st[key], st[key])
			continue
		}
		if v != float64(int64(v)) || v <= 0 {
			t.Errorf("stats[%q] = %v, want a positive integer", key, v)
		}
	}
	if st["connections"] != 2.0 {
		t.Errorf("stats connections = %v, want 2", st["connections"])
	}
	if st["server"] != name {
		t.Errorf("stats server = %v, want %q", st["server"], name)
	}
}

// testSigterm checks that the server exits with status 0 on SIGTERM while a
// subscriber is connected, and that the subscriber's connection ends.
func testSigterm(t *testing.T, p *peer) {
	sub := dial(t, p.wsURL("/ws?topics=bye"))
	defer sub.Close()
	waitConnections(t, p, 1)
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(ioTimeout):
		t.Fatalf("server still running %v after SIGTERM", ioTimeout)
	}
	if p.err != nil {
		t.Fatalf("server exit after SIGTERM: %v, want status 0", p.err)
	}
	sub.SetReadDeadline(time.Now().Add(ioTimeout))
	if _, _, err := sub.ReadMessage(); err == nil {
		t.Error("subscriber got a message after shutdown, want its connection closed")
	} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
		t.Error("subscriber connection still open after the server exited")
	}
}

func dial(t *testing.T, url string) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.DefaultDialer.Dial(url, nil)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", url, err, status)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func stats(t *testing.T, p *peer) map[string]any {
	t.Helper()
	status, body := get(t, p.url("/stats"))
	if status != http.StatusOK {
		t.Fatalf("GET /stats = %d %s", status, body)
	}
	var st map[string]any
	if err := json.Unmarshal([]byte(body), &st); err != nil {
		t.Fatalf("GET /stats: %v in %s", err, body)
	}
	return st
}

// waitConnections waits until /stats counts n connections: a subscriber is
// counted once it is subscribed.
func waitConnections(t *testing.T, p *peer, n int) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for {
		st := stats(t, p)
		if st["connections"] == float64(n) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("stats connections = %v after %v, want %d", st["connections"], ioTimeout, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func publish(t *testing.T, p *peer, topic, body string, wantSeq uint64) {
	t.Helper()
	resp, err := http.Post(p.url("/publish?topic="+topic), "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish %s to %s = %d %s, want 202", body, topic, resp.StatusCode, b)
	}
	var got struct {
		Seq *uint64 `json:"seq"`
	}
	if err := json.Unmarshal(b, &got); err != nil || got.Seq == nil || *got.Seq != wantSeq {
		t.Fatalf("publish %s to %s answered %s, want {\"seq\":%d}", body, topic, b, wantSeq)
	}
}

// joined holds, per connection, the messages read and not yet wanted: a
// server may join queued messages into one text message, separated by
// newlines (gorillahub does, as gorilla's chat example).
var joined struct {
	sync.Mutex
	m map[*websocket.Conn][]string
}

func wantMessage(t *testing.T, c *websocket.Conn, want string) {
	t.Helper()
	joined.Lock()
	defer joined.Unlock()
	if joined.m == nil {
		joined.m = make(map[*websocket.Conn][]string)
	}
	if len(joined.m[c]) == 0 {
		c.SetReadDeadline(time.Now().Add(ioTimeout))
		typ, data, err := c.ReadMessage()
		if err != nil {
			t.Fatalf("waiting for %s: %v", want, err)
		}
		if typ != websocket.TextMessage {
			t.Fatalf("got message type %d %s, want text %s", typ, data, want)
		}
		joined.m[c] = strings.Split(string(data), "\n")
	}
	got := joined.m[c][0]
	joined.m[c] = joined.m[c][1:]
	if got != want {
		t.Fatalf("got message %s, want %s", got, want)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
