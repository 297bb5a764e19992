package wsconn

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// fuzzReaderSeeds are streams for FuzzReader: valid frames of every kind
// and every rule broken once.
func fuzzReaderSeeds() [][]byte {
	return [][]byte{
		clientText("hello"),
		clientBinary(binaryPayload(200, 1)),
		testFrame{fin: true, op: ws.OpText, payload: []byte("64-bit length"), lenForm: 64}.encode(),
		cat(clientFrame(false, ws.OpText, []byte("Hel")), clientPing("p"), clientFrame(true, ws.OpContinuation, []byte("lo"))),
		cat(clientFrame(false, ws.OpText, []byte("\xe2")), clientFrame(false, ws.OpContinuation, []byte("\x82")), clientFrame(true, ws.OpContinuation, []byte("\xac"))),
		clientClose(closePayload(1000, "bye")),
		clientClose(nil),
		clientClose([]byte{3}),
		clientClose(closePayload(1005, "")),
		clientClose(closePayload(1000, "\xff")),
		clientPong("pong"),
		testFrame{fin: true, op: ws.OpText, payload: []byte("hi"), unmasked: true}.encode(),
		testFrame{fin: true, rsv: 0x40, op: ws.OpText, payload: []byte("hi")}.encode(),
		clientFrame(true, 0x3, nil),
		clientFrame(true, ws.OpPing, make([]byte, 126)),
		clientFrame(false, ws.OpPing, nil),
		clientFrame(true, ws.OpContinuation, []byte("x")),
		cat(clientFrame(false, ws.OpText, []byte("a")), clientText("b")),
		clientText("\xed\xa0\x80"),
		testFrame{fin: true, op: ws.OpBinary, declared: lenPtr(1 << 63)}.encode(),
		testFrame{fin: true, op: ws.OpBinary, declared: lenPtr(1 << 40)}.encode(),
		mixedStream(),
		mixedStream()[:37],
		cat(clientText("a"), clientText("b"), clientText("c"), clientBinary(nil), clientPing(""), clientText("")),
	}
}

// FuzzReader feeds arbitrary bytes to a Reader, whole and in reads whose
// sizes come from cuts, with a message limit of limit bytes. The Reader
// must not panic, must keep its invariants (see feed), must give the same
// messages and error however the stream is split, and must agree with the
// reference model refParse.
func FuzzReader(f *testing.F) {
	for i, s := range fuzzReaderSeeds() {
		f.Add(s, []byte{byte(i), 3, 1}, uint16(1024))
	}
	f.Add(clientBinary(binaryPayload(100, 2)), []byte{}, uint16(10))
	f.Fuzz(func(t *testing.T, stream, cuts []byte, limit uint16) {
		lim := int64(limit)
		whole := feedWhole(t, lim, stream)
		requireMatchesRef(t, stream, lim, whole, "whole")

		var r Reader
		r.Reset(lim)
		i := 0
		chunked := feed(t, &r, stream, func() int {
			if len(cuts) == 0 {
				return 1
			}
			n := int(cuts[i%len(cuts)]) + 1
			i++
			return n
		})
		requireSameResult(t, whole, chunked, "reads of sizes from % x", cuts)
		requireSameResult(t, whole, feedSizes(t, lim, stream, 1), "one byte at a time")
	})
}

// upgradeHead builds a request head from lines, ending it with the blank
// line.
func upgradeHead(lines ...string) []byte {
	return []byte(strings.Join(lines, "\r\n") + "\r\n\r\n")
}

// wsHeaders are the headers of a valid WebSocket upgrade request.
var wsHeaders = []string{
	"Host: example.com",
	"Upgrade: websocket",
	"Connection: Upgrade",
	"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
	"Sec-WebSocket-Version: 13",
}

func withHeaders(requestLine string, extra ...string) []byte {
	return upgradeHead(append(append([]string{requestLine}, wsHeaders...), extra...)...)
}

// without returns wsHeaders without the header named name.
func without(name string) []string {
	var h []string
	for _, l := range wsHeaders {
		if !strings.HasPrefix(l, name+":") {
			h = append(h, l)
		}
	}
	return h
}

// upgradeCases are request heads with what the server must answer: plain
// HTTP (status 0), or the status of its upgrade response.
var upgradeCases = []struct {
	name   string
	head   []byte
	status int
}{
	{"valid", withHeaders("GET /echo HTTP/1.1"), 101},
	{"valid with query, origin, token", withHeaders("GET /echo?topics=a,b&token=x HTTP/1.1",
		"Origin: https://example.com", "Authorization: Bearer t0k3n"), 101},
	{"valid, lower-case names and values", upgradeHead("GET /echo HTTP/1.1", "host: h", "upgrade: WebSocket",
		"connection: keep-alive, upgrade", "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==", "sec-websocket-version: 13"), 101},
	{"valid with protocol and extensions", withHeaders("GET /echo HTTP/1.1",
		"Sec-WebSocket-Protocol: chat, superchat", "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"), 101},
	{"valid, HTTP/1.2", withHeaders("GET /echo HTTP/1.2"), 101},
	{"rejected by Config.Upgrade", withHeaders("GET /forbidden HTTP/1.1"), 403},
	{"rejected by origin", withHeaders("GET /echo HTTP/1.1", "Origin: http://evil.example"), 403},
	{"no handler", withHeaders("GET /nothing HTTP/1.1"), 404},
	{"Config.Upgrade fails", withHeaders("GET /fail HTTP/1.1"), 500},
	{"missing key", upgradeHead(append([]string{"GET /echo HTTP/1.1"}, without("Sec-WebSocket-Key")...)...), 400},
	{"short key", withHeaders("GET /echo HTTP/1.1", "Sec-WebSocket-Key: c2hvcnQ="), 400},
	{"bad version", upgradeHead(append([]string{"GET /echo HTTP/1.1"}, append(without("Sec-WebSocket-Version"), "Sec-WebSocket-Version: 8")...)...), 426},
	{"missing version", upgradeHead(append([]string{"GET /echo HTTP/1.1"}, without("Sec-WebSocket-Version")...)...), 400},
	{"missing host", upgradeHead(append([]string{"GET /echo HTTP/1.1"}, without("Host")...)...), 400},
	{"missing connection", upgradeHead(append([]string{"GET /echo HTTP/1.1"}, without("Connection")...)...), 400},
	{"connection keep-alive", upgradeHead(append([]string{"GET /echo HTTP/1.1"}, append(without("Connection"), "Connection: keep-alive")...)...), 400},
	{"POST", withHeaders("POST /echo HTTP/1.1"), 405},
	{"HTTP/1.0", withHeaders("GET /echo HTTP/1.0"), 505},
	{"HTTP/2.0", withHeaders("GET /echo HTTP/2.0"), 505},
	{"huge header line", withHeaders("GET /echo HTTP/1.1", "X-Big: "+strings.Repeat("b", 7000)), 101},
	{"header without colon", withHeaders("GET /echo HTTP/1.1", "no colon here"), 400},
	{"malformed request line", upgradeHead(append([]string{"GARBAGE"}, wsHeaders...)...), 400},
	{"empty request line", upgradeHead(append([]string{""}, wsHeaders...)...), 400},
	{"request line without version", upgradeHead(append([]string{"GET /echo"}, wsHeaders...)...), 400},
	{"plain GET", upgradeHead("GET /healthz HTTP/1.1", "Host: example.com"), 0},
	{"plain POST", upgradeHead("POST /publish?topic=a HTTP/1.1", "Host: h", "Content-Length: 2"), 0},
	{"Upgrade: h2c", upgradeHead("GET / HTTP/1.1", "Host: h", "Connection: Upgrade, HTTP2-Settings", "Upgrade: h2c"), 0},
	{"plain HTTP/1.0", upgradeHead("GET / HTTP/1.0"), 0},
}

// newUpgradeServer returns a Server whose Config.Upgrade routes /echo to
// Echo, rejects /forbidden and a foreign origin with 403, has no handler for
// other paths and fails for /fail. The server is never served: the tests
// call its upgrade path directly.
func newUpgradeServer(tb testing.TB) *Server {
	s, err := NewServer(Config{
		Workers: 1,
		Upgrade: func(r *Request) (Handler, error) {
			switch {
			case r.Origin != "" && r.Origin != "https://example.com":
				return nil, Reject(http.StatusForbidden, "origin not allowed")
			case r.Path == "/echo":
				return Echo{}, nil
			case r.Path == "/forbidden":
				return nil, Reject(http.StatusForbidden, "forbidden")
			case r.Path == "/fail":
				return nil, errors.New("boom")
			}
			return nil, nil
		},
	})
	require.NoError(tb, err)
	tb.Cleanup(func() { _ = s.Close() })
	return s
}

// checkUpgrade runs head through the upgrade path as readHandshake does and
// checks the answer. It returns the response status, or 0 for plain HTTP.
func checkUpgrade(t *testing.T, s *Server, head []byte) int {
	t.Helper()
	if !wantsWebSocket(head) {
		return 0
	}
	h, resp, err := s.upgrade(&Conn{srv: s}, head)
	if !bytes.HasPrefix(resp, []byte("HTTP/1.1 ")) || len(resp) < len("HTTP/1.1 xxx") {
		t.Fatalf("upgrade of %q: response %q (err %v), want an HTTP/1.1 response", head, resp, err)
	}
	status := 0
	for _, c := range resp[9:12] {
		if c < '0' || c > '9' {
			t.Fatalf("upgrade of %q: response %q has no status", head, resp)
		}
		status = status*10 + int(c-'0')
	}
	switch {
	case err == nil && (status != 101 || h == nil):
		t.Fatalf("upgrade of %q: no error, but status %d and handler %v", head, status, h)
	case err != nil && (status == 101 || h != nil):
		t.Fatalf("upgrade of %q: error %v, but status %d and handler %v", head, err, status, h)
	}
	return status
}

func TestUpgradeResponses(t *testing.T) {
	s := newUpgradeServer(t)
	for _, tc := range upgradeCases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.status, checkUpgrade(t, s, tc.head))
		})
	}
}

// FuzzUpgrade feeds arbitrary request heads through the upgrade path, cut
// at the first blank line as readHandshake cuts them. It must not panic, and
// a request that asks for a WebSocket must get an HTTP/1.1 response: the 101
// with a handler, or an error status.
func FuzzUpgrade(f *testing.F) {
	for _, tc := range upgradeCases {
		f.Add(tc.head)
	}
	s := newUpgradeServer(f)
	maxHeader := s.cfg.MaxHeaderBytes
	f.Fuzz(func(t *testing.T, data []byte) {
		data = append(data, crlfcrlf...)
		head := data[:bytes.Index(data, crlfcrlf)+len(crlfcrlf)]
		if len(head) > maxHeader {
			return // readHandshake answers 431 without parsing
		}
		checkUpgrade(t, s, head)
	})
}
