package broadcast_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/gobwas/ws"
	gorilla "github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// waitTimeout bounds every wait in these tests. It is generous on purpose:
// a deadline for a hang, never a latency assertion.
const waitTimeout = 15 * time.Second

// testServer is a wsconn.Server serving a broadcast.Hub on loopback, wired
// as "fanout serve" wires them: /ws upgrades go to the hub, /publish to its
// HTTP handler.
type testServer struct {
	hub  *broadcast.Hub
	srv  *wsconn.Server
	addr string // host:port
}

// startHub starts a hub with hcfg and a server with scfg (Upgrade and HTTP
// are filled in) on 127.0.0.1:0. When the test ends, the hub is closed and
// then the server shut down, as on SIGTERM.
func startHub(t testing.TB, hcfg broadcast.Config, scfg wsconn.Config) *testServer {
	t.Helper()
	return startHubUnless(t, hcfg, scfg, nil)
}

// startHubUnless is startHub whose cleanup leaves the hub and the server as
// they are if frozen is set: a frozen server cannot be shut down, and the
// test must fail rather than hang.
func startHubUnless(t testing.TB, hcfg broadcast.Config, scfg wsconn.Config, frozen *atomic.Bool) *testServer {
	t.Helper()
	quiet := slog.New(slog.DiscardHandler)
	if hcfg.Logger == nil {
		hcfg.Logger = quiet
	}
	if scfg.Logger == nil {
		scfg.Logger = quiet
	}
	hub := broadcast.New(hcfg)
	mux := http.NewServeMux()
	mux.Handle("/publish", hub.PublishHandler())
	scfg.Upgrade = func(r *wsconn.Request) (wsconn.Handler, error) {
		if r.Path == "/ws" {
			return hub.Upgrade(r)
		}
		return nil, wsconn.Reject(http.StatusNotFound, "not found")
	}
	scfg.HTTP = mux
	srv, err := wsconn.NewServer(scfg)
	if err != nil {
		hub.Close()
		require.NoError(t, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		hub.Close()
		_ = srv.Close()
		require.NoError(t, err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		if frozen != nil && frozen.Load() {
			return
		}
		hub.Close()
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		assert.NoError(t, srv.Shutdown(ctx), "server shutdown")
		assert.ErrorIs(t, <-served, wsconn.ErrServerClosed)
	})
	return &testServer{hub: hub, srv: srv, addr: ln.Addr().String()}
}

// publish publishes data to topic through the hub and returns its seq.
func (ts *testServer) publish(t testing.TB, topic, data string) uint64 {
	t.Helper()
	seq, err := ts.hub.Publish(topic, []byte(data))
	require.NoError(t, err)
	return seq
}

var httpClient = &http.Client{Timeout: waitTimeout}

// post sends POST /publish?topic=topic with body and returns the status and
// the response body.
func (ts *testServer) post(topic string, body []byte) (int, []byte, error) {
	u := "http://" + ts.addr + "/publish"
	if topic != "" {
		u += "?topic=" + topic
	}
	resp, err := httpClient.Post(u, "application/json", bytes.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// postSeq publishes body to topic with POST /publish and returns the seq of
// the 202 answer.
func (ts *testServer) postSeq(topic string, body []byte) (uint64, error) {
	status, b, err := ts.post(topic, body)
	if err != nil {
		return 0, err
	}
	if status != http.StatusAccepted {
		return 0, fmt.Errorf("POST /publish: status %d (%s), want 202", status, b)
	}
	var r struct {
		Seq *uint64 `json:"seq"`
	}
	if err := json.Unmarshal(b, &r); err != nil || r.Seq == nil {
		return 0, fmt.Errorf("POST /publish: body %q is not {\"seq\":N}", b)
	}
	return *r.Seq, nil
}

// wsClient is a WebSocket client of one of the two libraries.
type wsClient interface {
	// ReadText reads the next message, which must be text, waiting up to d.
	ReadText(d time.Duration) ([]byte, error)
	WriteText(p []byte) error
	WriteBinary(p []byte) error
	Close()
}

// clientKinds are the client libraries the tests run with.
var clientKinds = []string{"gorilla", "coder"}

type gorillaClient struct{ c *gorilla.Conn }

func (g *gorillaClient) ReadText(d time.Duration) ([]byte, error) {
	if err := g.c.SetReadDeadline(time.Now().Add(d)); err != nil {
		return nil, err
	}
	typ, p, err := g.c.ReadMessage()
	if err != nil {
		return nil, err
	}
	if typ != gorilla.TextMessage {
		return nil, fmt.Errorf("message of type %d, want text", typ)
	}
	return p, nil
}

func (g *gorillaClient) write(typ int, p []byte) error {
	if err := g.c.SetWriteDeadline(time.Now().Add(waitTimeout)); err != nil {
		return err
	}
	return g.c.WriteMessage(typ, p)
}

func (g *gorillaClient) WriteText(p []byte) error   { return g.write(gorilla.TextMessage, p) }
func (g *gorillaClient) WriteBinary(p []byte) error { return g.write(gorilla.BinaryMessage, p) }
func (g *gorillaClient) Close()                     { _ = g.c.Close() }

type coderClient struct{ c *websocket.Conn }

func (k *coderClient) ReadText(d time.Duration) ([]byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	typ, p, err := k.c.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageText {
		return nil, fmt.Errorf("message of type %v, want text", typ)
	}
	return p, nil
}

func (k *coderClient) write(typ websocket.MessageType, p []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	return k.c.Write(ctx, typ, p)
}

func (k *coderClient) WriteText(p []byte) error   { return k.write(websocket.MessageText, p) }
func (k *coderClient) WriteBinary(p []byte) error { return k.write(websocket.MessageBinary, p) }
func (k *coderClient) Close()                     { _ = k.c.CloseNow() }

// dial connects a client of kind (gorilla or coder; gorilla-deflate and
// coder-deflate offer permessage-deflate) to /ws?query. On a rejected
// handshake it returns the HTTP response with the error.
func dial(kind, addr, query string) (wsClient, *http.Response, error) {
	u := "ws://" + addr + "/ws"
	if query != "" {
		u += "?" + query
	}
	switch kind {
	case "gorilla", "gorilla-deflate":
		d := gorilla.Dialer{HandshakeTimeout: waitTimeout, EnableCompression: kind == "gorilla-deflate"}
		c, resp, err := d.Dial(u, nil)
		if err != nil {
			return nil, resp, err
		}
		c.SetReadLimit(4 << 20)
		return &gorillaClient{c}, resp, nil
	case "coder", "coder-deflate":
		ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
		defer cancel()
		var opts *websocket.DialOptions
		if kind == "coder-deflate" {
			opts = &websocket.DialOptions{CompressionMode: websocket.CompressionContextTakeover}
		}
		c, resp, err := websocket.Dial(ctx, u, opts)
		if err != nil {
			return nil, resp, err
		}
		c.SetReadLimit(4 << 20)
		return &coderClient{c}, resp, nil
	}
	panic("unknown client kind " + kind)
}

// mustDial is dial for the test goroutine; the client is closed when the
// test ends.
func mustDial(t testing.TB, kind, addr, query string) wsClient {
	t.Helper()
	c, _, err := dial(kind, addr, query)
	require.NoError(t, err, "%s: dial /ws?%s", kind, query)
	t.Cleanup(c.Close)
	return c
}

// dialStatus dials and returns the HTTP status of a rejected handshake.
func dialStatus(t testing.TB, kind, addr, query string) int {
	t.Helper()
	c, resp, err := dial(kind, addr, query)
	if err == nil {
		c.Close()
		t.Fatalf("%s: dial /ws?%s succeeded, want a rejection", kind, query)
	}
	require.NotNil(t, resp, "%s: dial /ws?%s: no HTTP response: %v", kind, query, err)
	return resp.StatusCode
}

// closeCode returns the close code in a read error of either library, or -1.
func closeCode(err error) int {
	var ce *gorilla.CloseError
	if errors.As(err, &ce) {
		return ce.Code
	}
	return int(websocket.CloseStatus(err))
}

// frame is a server text frame of wire protocol v1, decoded.
type frame struct {
	Raw  []byte                     `json:"-"`
	Keys map[string]json.RawMessage `json:"-"`

	Type      string          `json:"type"`
	Topic     string          `json:"topic"`
	Seq       uint64          `json:"seq"`
	Data      json.RawMessage `json:"data"`
	Epoch     string          `json:"epoch"`
	Recovered bool            `json:"recovered"`
	From      uint64          `json:"from"` // dropped
	To        uint64          `json:"to"`   // dropped
	Code      string          `json:"code"`
	Message   string          `json:"message"`
}

// isMessage reports whether f is a topic message: messages have no "type".
func (f frame) isMessage() bool {
	_, typed := f.Keys["type"]
	return !typed
}

func (f frame) String() string { return string(f.Raw) }

// parseFrame decodes a server text message. A topic message must be exactly
// {"topic","seq","data"}.
func parseFrame(p []byte) (frame, error) {
	f := frame{Raw: p}
	if err := json.Unmarshal(p, &f.Keys); err != nil {
		return f, fmt.Errorf("server message %q is not a JSON object: %w", p, err)
	}
	if err := json.Unmarshal(p, &f); err != nil {
		return f, fmt.Errorf("server message %q: %w", p, err)
	}
	if f.isMessage() {
		keys := make([]string, 0, len(f.Keys))
		for k := range f.Keys {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"data", "seq", "topic"}) {
			return f, fmt.Errorf("message %q has keys %v, want exactly data, seq, topic", p, keys)
		}
		if f.Seq == 0 {
			return f, fmt.Errorf("message %q with seq 0", p)
		}
	}
	return f, nil
}

// readFrame reads and decodes the next server message.
func readFrame(c wsClient) (frame, error) {
	p, err := c.ReadText(waitTimeout)
	if err != nil {
		return frame{}, err
	}
	return parseFrame(p)
}

func mustRead(t testing.TB, c wsClient) frame {
	t.Helper()
	f, err := readFrame(c)
	require.NoError(t, err)
	return f
}

// mustReadMessage reads a topic message with seq on topic.
func mustReadMessage(t testing.TB, c wsClient, topic string, seq uint64) frame {
	t.Helper()
	f := mustRead(t, c)
	require.True(t, f.isMessage(), "want message %s:%d, got %s", topic, seq, f)
	require.Equal(t, topic, f.Topic, "message %s", f)
	require.Equal(t, seq, f.Seq, "message %s", f)
	return f
}

// mustReadPastUnsubscribed reads the next frame, past an unsubscribed reply
// that may or may not come first (see TestUnsubscribeReply).
func mustReadPastUnsubscribed(t testing.TB, c wsClient) frame {
	t.Helper()
	f := mustRead(t, c)
	if f.Type == "unsubscribed" {
		f = mustRead(t, c)
	}
	return f
}

// mustReadSubscribed reads a subscribed reply for topic.
func mustReadSubscribed(t testing.TB, c wsClient, topic string) frame {
	t.Helper()
	f := mustRead(t, c)
	require.Equal(t, "subscribed", f.Type, "want the subscribed reply for %s, got %s", topic, f)
	require.Equal(t, topic, f.Topic, "reply %s", f)
	require.NotEmpty(t, f.Epoch, "subscribed reply without an epoch: %s", f)
	return f
}

// mustReadError reads an error frame with code.
func mustReadError(t testing.TB, c wsClient, code string) frame {
	t.Helper()
	f := mustRead(t, c)
	require.Equal(t, "error", f.Type, "want an error frame %s, got %s", code, f)
	require.Equal(t, code, f.Code, "error frame %s", f)
	require.NotEmpty(t, f.Message, "error frame without a message: %s", f)
	return f
}

func mustWrite(t testing.TB, c wsClient, msg string) {
	t.Helper()
	require.NoError(t, c.WriteText([]byte(msg)))
}

func subscribeMsg(topic string) string {
	return fmt.Sprintf(`{"type":"subscribe","topic":%q}`, topic)
}

func subscribeSinceMsg(topic string, since uint64) string {
	return fmt.Sprintf(`{"type":"subscribe","topic":%q,"since":%d}`, topic, since)
}

func unsubscribeMsg(topic string) string {
	return fmt.Sprintf(`{"type":"unsubscribe","topic":%q}`, topic)
}

// unsubscribeSync unsubscribes c from topic and returns once the
// unsubscribe has taken effect, with the messages of topic that were still
// on their way. It subscribes to barrier, a topic of its own: the reply to
// that comes through the same shard, after the unsubscribe. (An
// "unsubscribed" reply would do, but see TestUnsubscribeReply.)
func unsubscribeSync(t testing.TB, c wsClient, topic, barrier string) []frame {
	t.Helper()
	mustWrite(t, c, unsubscribeMsg(topic))
	mustWrite(t, c, subscribeMsg(barrier))
	var inFlight []frame
	for {
		f := mustRead(t, c)
		switch {
		case f.Type == "unsubscribed" && f.Topic == topic:
		case f.isMessage() && f.Topic == topic:
			inFlight = append(inFlight, f)
		case f.Type == "subscribed" && f.Topic == barrier:
			return inFlight
		default:
			t.Fatalf("unsubscribing from %s: unexpected %s", topic, f)
		}
	}
}

func publishMsg(topic, data string) string {
	return fmt.Sprintf(`{"type":"publish","topic":%q,"data":%s}`, topic, data)
}

// Raw WebSocket over TCP, for what no client library does: never read,
// never answer a ping, stop in the middle of a frame.

const (
	opText  byte = 0x1
	opClose byte = 0x8
	opPing  byte = 0x9
	opPong  byte = 0xA
)

type rawClient struct {
	conn *net.TCPConn
	br   *bufio.Reader
}

// dialRaw connects to addr, sends an upgrade request for target (path and
// query) and checks the 101. rcvBuf, if not zero, is set as SO_RCVBUF
// before connecting, so the TCP window stays that small. The connection is
// closed when the test ends.
func dialRaw(t testing.TB, addr, target string, rcvBuf int) *rawClient {
	t.Helper()
	d := net.Dialer{Timeout: waitTimeout}
	if rcvBuf > 0 {
		d.Control = func(_, _ string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, rcvBuf)
			})
			return errors.Join(err, serr)
		}
	}
	nc, err := d.Dial("tcp", addr)
	require.NoError(t, err)
	conn := nc.(*net.TCPConn)
	t.Cleanup(func() { _ = conn.Close() })
	if rcvBuf > 0 {
		require.NoError(t, conn.SetReadBuffer(rcvBuf))
	}
	var k [16]byte
	binary.LittleEndian.PutUint64(k[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(k[8:], rand.Uint64())
	key := base64.StdEncoding.EncodeToString(k[:])
	req := "GET " + target + " HTTP/1.1\r\nHost: " + addr + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: " + key + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
	require.NoError(t, conn.SetDeadline(time.Now().Add(waitTimeout)))
	_, err = conn.Write([]byte(req))
	require.NoError(t, err)
	br := bufio.NewReaderSize(conn, 512)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	h := sha1.Sum([]byte(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
	require.Equal(t, base64.StdEncoding.EncodeToString(h[:]), resp.Header.Get("Sec-WebSocket-Accept"))
	require.NoError(t, conn.SetDeadline(time.Time{}))
	return &rawClient{conn: conn, br: br}
}

// clientFrame builds a masked client frame header for a payload of n bytes
// followed by payload (which may be shorter than n: half a frame).
func clientFrame(op byte, n int, payload []byte) []byte {
	out := []byte{0x80 | op}
	switch {
	case n <= 125:
		out = append(out, 0x80|byte(n))
	case n <= 0xffff:
		out = append(out, 0x80|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	var key [4]byte
	binary.BigEndian.PutUint32(key[:], rand.Uint32())
	out = append(out, key[:]...)
	for i, b := range payload {
		out = append(out, b^key[i&3])
	}
	return out
}

func (c *rawClient) write(t testing.TB, p []byte) {
	t.Helper()
	require.NoError(t, c.conn.SetWriteDeadline(time.Now().Add(waitTimeout)))
	_, err := c.conn.Write(p)
	require.NoError(t, err)
}

// rawFrame is a frame read from the server.
type rawFrame struct {
	Op      byte
	Payload []byte
}

// closeCode returns the code of a close frame, or -1 without one.
func (f rawFrame) closeCode() int {
	if len(f.Payload) < 2 {
		return -1
	}
	return int(binary.BigEndian.Uint16(f.Payload))
}

// readFrame reads one complete, unfragmented, unmasked server frame,
// waiting up to d.
func (c *rawClient) readFrame(d time.Duration) (rawFrame, error) {
	if err := c.conn.SetReadDeadline(time.Now().Add(d)); err != nil {
		return rawFrame{}, err
	}
	h, err := ws.ReadHeader(c.br)
	switch {
	case err != nil:
		return rawFrame{}, err
	case !h.Fin || h.Rsv != 0:
		return rawFrame{}, fmt.Errorf("server frame with fin %v, rsv %#x: want FIN and no RSV bits", h.Fin, h.Rsv)
	case h.Masked:
		return rawFrame{}, errors.New("server frame is masked")
	case h.Length > 16<<20:
		return rawFrame{}, fmt.Errorf("server frame of %d bytes", h.Length)
	}
	f := rawFrame{Op: byte(h.OpCode), Payload: make([]byte, h.Length)}
	if _, err := io.ReadFull(c.br, f.Payload); err != nil {
		return rawFrame{}, err
	}
	return f, nil
}

// requireEOF asserts that the server closed the TCP connection.
func (c *rawClient) requireEOF(t testing.TB) {
	t.Helper()
	require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(waitTimeout)))
	b, err := c.br.ReadByte()
	require.ErrorIs(t, err, io.EOF, "want EOF, got byte %#x", b)
}

// jsonData returns a JSON object of about size bytes that names i.
func jsonData(i, size int) string {
	head := `{"i":` + strconv.Itoa(i) + `,"pad":"`
	pad := max(size-len(head)-2, 0)
	return head + strings.Repeat("x", pad) + `"}`
}
