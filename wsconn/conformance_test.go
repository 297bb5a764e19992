package wsconn_test

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/wsconn"
)

// The conformance tests speak WebSocket over raw TCP with frames built by
// hand, so they can send what no client library would: unmasked frames,
// reserved bits and opcodes, bad lengths, bad UTF-8, frames cut anywhere.

// Opcodes and header bits (RFC 6455 section 5.2).
const (
	opCont   byte = 0x0
	opText   byte = 0x1
	opBinary byte = 0x2
	opClose  byte = 0x8
	opPing   byte = 0x9
	opPong   byte = 0xA

	bitFIN  byte = 0x80
	bitRSV1 byte = 0x40
	bitRSV2 byte = 0x20
	bitRSV3 byte = 0x10
)

// rawTimeout bounds every wait for the server in these tests. It is generous
// on purpose: it is a deadline for a hang, not a latency assertion.
const rawTimeout = 10 * time.Second

// conformanceMaxMessageBytes is the server's message limit in the table.
const conformanceMaxMessageBytes = 1024

const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// rawFrame builds a client frame: first header byte b0 (FIN, RSV and
// opcode), a declared payload length that need not match len(payload), and
// the payload bytes actually included. When masked, a random masking key is
// used and payload is masked with it; the length takes the shortest of the
// three encodings.
func rawFrame(b0 byte, masked bool, declared uint64, payload []byte) []byte {
	var maskBit byte
	if masked {
		maskBit = 0x80
	}
	out := []byte{b0}
	switch {
	case declared <= 125:
		out = append(out, maskBit|byte(declared))
	case declared <= 0xffff:
		out = append(out, maskBit|126)
		out = binary.BigEndian.AppendUint16(out, uint16(declared))
	default:
		out = append(out, maskBit|127)
		out = binary.BigEndian.AppendUint64(out, declared)
	}
	if !masked {
		return append(out, payload...)
	}
	var key [4]byte
	binary.BigEndian.PutUint32(key[:], rand.Uint32())
	out = append(out, key[:]...)
	for i, b := range payload {
		out = append(out, b^key[i&3])
	}
	return out
}

// frame builds a well-formed masked client frame.
func frame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= bitFIN
	}
	return rawFrame(b0, true, uint64(len(payload)), payload)
}

// closeFrame builds a masked client close frame with code and reason.
func closeFrame(code uint16, reason string) []byte {
	return frame(true, opClose, closePayload(code, reason))
}

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

// serverFrame is a frame as read from the server.
type serverFrame struct {
	Fin     bool
	Op      byte
	Payload []byte
}

func (f serverFrame) String() string {
	return fmt.Sprintf("{fin:%v op:%#x payload:%q}", f.Fin, f.Op, f.Payload)
}

// rawClient is a client connection over raw TCP.
type rawClient struct {
	conn *net.TCPConn
	br   *bufio.Reader
}

// dialRaw opens a TCP connection to addr; it is closed when the test ends.
func dialRaw(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, rawTimeout)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	tc := c.(*net.TCPConn)
	// Go sets TCP_NODELAY by default; say so, since the bytewise run relies
	// on every Write leaving as a segment of its own.
	require.NoError(t, tc.SetNoDelay(true))
	return tc
}

// newSecKey returns a random Sec-WebSocket-Key.
func newSecKey() string {
	var k [16]byte
	binary.LittleEndian.PutUint64(k[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(k[8:], rand.Uint64())
	return base64.StdEncoding.EncodeToString(k[:])
}

// secAccept is the Sec-WebSocket-Accept the server must answer key with.
func secAccept(key string) string {
	h := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// upgradeRequest returns an upgrade request for path with key (no
// Sec-WebSocket-Key header when key is empty) and extra header lines.
func upgradeRequest(path, key string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\n", path)
	b.WriteString("Host: 127.0.0.1\r\n")
	b.WriteString("Upgrade: websocket\r\n")
	b.WriteString("Connection: Upgrade\r\n")
	if key != "" {
		fmt.Fprintf(&b, "Sec-WebSocket-Key: %s\r\n", key)
	}
	b.WriteString("Sec-WebSocket-Version: 13\r\n")
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// readUpgradeResponse reads the server's answer to an upgrade request with
// key and checks that it is a valid 101.
func readUpgradeResponse(t testing.TB, br *bufio.Reader, key string) {
	t.Helper()
	require.NoError(t, checkUpgradeResponse(br, key))
}

func checkUpgradeResponse(br *bufio.Reader, key string) error {
	resp, err := http.ReadResponse(br, nil)
	switch {
	case err != nil:
		return fmt.Errorf("reading the upgrade response: %w", err)
	case resp.StatusCode != http.StatusSwitchingProtocols:
		return fmt.Errorf("upgrade response status %d, want 101", resp.StatusCode)
	case !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket"):
		return fmt.Errorf("upgrade response with Upgrade: %q", resp.Header.Get("Upgrade"))
	case resp.Header.Get("Sec-WebSocket-Accept") != secAccept(key):
		return fmt.Errorf("Sec-WebSocket-Accept %q, want %q", resp.Header.Get("Sec-WebSocket-Accept"), secAccept(key))
	}
	return nil
}

// dialWS opens a TCP connection to addr and upgrades it at /echo, all
// synchronously: no goroutine is left behind. The connection is closed when
// the test ends.
func dialWS(t testing.TB, addr string) *rawClient {
	t.Helper()
	c, err := tryDialWS(addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.conn.Close() })
	return c
}

// tryDialWS is dialWS for any goroutine: it returns an error instead of
// failing a test, and the caller closes the connection.
func tryDialWS(addr string) (*rawClient, error) {
	nc, err := net.DialTimeout("tcp", addr, rawTimeout)
	if err != nil {
		return nil, err
	}
	conn := nc.(*net.TCPConn)
	c, err := upgradeConn(conn)
	if err != nil {
		_ = conn.Close()
		return nil, err
	}
	return c, nil
}

func upgradeConn(conn *net.TCPConn) (*rawClient, error) {
	if err := conn.SetNoDelay(true); err != nil {
		return nil, err
	}
	if err := conn.SetDeadline(time.Now().Add(rawTimeout)); err != nil {
		return nil, err
	}
	key := newSecKey()
	if _, err := conn.Write([]byte(upgradeRequest("/echo", key))); err != nil {
		return nil, err
	}
	// A small buffer: the server sends nothing after the 101 until asked.
	br := bufio.NewReaderSize(conn, 256)
	if err := checkUpgradeResponse(br, key); err != nil {
		return nil, err
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return &rawClient{conn: conn, br: br}, nil
}

// writeFrames writes frames, each with one Write, or, when bytewise, one byte
// per Write. It stops at the first write error and returns it: a server that
// has failed the connection may stop taking input, and what counts is what
// the client reads back.
func (c *rawClient) writeFrames(frames [][]byte, bytewise bool) error {
	if err := c.conn.SetWriteDeadline(time.Now().Add(rawTimeout)); err != nil {
		return err
	}
	for _, f := range frames {
		if !bytewise {
			if _, err := c.conn.Write(f); err != nil {
				return err
			}
			continue
		}
		for i := range f {
			if _, err := c.conn.Write(f[i : i+1]); err != nil {
				return err
			}
		}
	}
	return nil
}

// readFrame reads one server frame. Server frames must not be masked and
// must not have reserved bits set.
func (c *rawClient) readFrame() (serverFrame, error) {
	h, err := ws.ReadHeader(c.br)
	switch {
	case err != nil:
		return serverFrame{}, err
	case h.Rsv != 0:
		return serverFrame{}, fmt.Errorf("server frame with reserved bits: %#x", h.Rsv)
	case h.Masked:
		return serverFrame{}, fmt.Errorf("server frame is masked")
	case h.Length > 64<<20:
		return serverFrame{}, fmt.Errorf("server frame of %d bytes", h.Length)
	}
	f := serverFrame{Fin: h.Fin, Op: byte(h.OpCode), Payload: make([]byte, h.Length)}
	if _, err := io.ReadFull(c.br, f.Payload); err != nil {
		return serverFrame{}, err
	}
	return f, nil
}

// readUntilClose reads frames until a close frame and returns the frames
// before it and the close code (-1 for a close frame without a code).
func (c *rawClient) readUntilClose(t testing.TB) (frames []serverFrame, code int) {
	t.Helper()
	require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(rawTimeout)))
	for {
		f, err := c.readFrame()
		require.NoError(t, err, "reading frames until the server's close frame; got so far: %v", frames)
		if f.Op != opClose {
			frames = append(frames, f)
			continue
		}
		require.True(t, f.Fin, "close frame without FIN")
		require.NotEqual(t, 1, len(f.Payload), "close frame with a 1-byte payload")
		if len(f.Payload) == 0 {
			return frames, -1
		}
		return frames, int(binary.BigEndian.Uint16(f.Payload))
	}
}

// requireEOF asserts that the server closes the TCP connection: the next
// read returns EOF (not a reset), within rawTimeout.
func (c *rawClient) requireEOF(t testing.TB) {
	t.Helper()
	require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(rawTimeout)))
	b, err := c.br.ReadByte()
	require.ErrorIs(t, err, io.EOF, "want EOF after the close frame, got byte %#x", b)
}

// conformanceCase is one row of the conformance table: the frames the client
// sends, the frames it must get back before the server's close frame, and
// the close code.
type conformanceCase struct {
	name   string
	frames [][]byte
	want   []serverFrame // in order, before the close frame
	code   int
}

func echoText(s string) serverFrame   { return serverFrame{Fin: true, Op: opText, Payload: []byte(s)} }
func echoBinary(p []byte) serverFrame { return serverFrame{Fin: true, Op: opBinary, Payload: p} }
func pong(s string) serverFrame       { return serverFrame{Fin: true, Op: opPong, Payload: []byte(s)} }

// frames is a shorthand for a list of frames.
func frames(f ...[]byte) [][]byte { return f }

// clientDone is the close frame that ends the rows in which the server must
// not fail the connection: the server echoes it with 1000.
var clientDone = closeFrame(1000, "")

func conformanceCases() []conformanceCase {
	hello := []byte("hello")
	cases := []conformanceCase{
		// Masking (section 5.1).
		{name: "unmasked text", frames: frames(rawFrame(bitFIN|opText, false, 5, hello)), code: 1002},
		{name: "unmasked empty binary", frames: frames(rawFrame(bitFIN|opBinary, false, 0, nil)), code: 1002},
		{name: "unmasked ping", frames: frames(rawFrame(bitFIN|opPing, false, 5, hello)), code: 1002},
		{name: "unmasked close", frames: frames(rawFrame(bitFIN|opClose, false, 2, closePayload(1000, ""))), code: 1002},

		// Reserved bits without a negotiated extension.
		{name: "RSV1 text", frames: frames(rawFrame(bitFIN|bitRSV1|opText, true, 5, hello)), code: 1002},
		{name: "RSV2 text", frames: frames(rawFrame(bitFIN|bitRSV2|opText, true, 5, hello)), code: 1002},
		{name: "RSV3 text", frames: frames(rawFrame(bitFIN|bitRSV3|opText, true, 5, hello)), code: 1002},
		{name: "RSV1 ping", frames: frames(rawFrame(bitFIN|bitRSV1|opPing, true, 5, hello)), code: 1002},
		{name: "RSV3 after a good message", frames: frames(frame(true, opText, hello), rawFrame(bitFIN|bitRSV3|opBinary, true, 5, hello)), want: []serverFrame{echoText("hello")}, code: 1002},

		// Control frames (section 5.5).
		{name: "ping 126 bytes", frames: frames(frame(true, opPing, bytes.Repeat([]byte("p"), 126))), code: 1002},
		{name: "pong 126 bytes", frames: frames(frame(true, opPong, bytes.Repeat([]byte("p"), 126))), code: 1002},
		{name: "close 126 bytes", frames: frames(frame(true, opClose, closePayload(1000, strings.Repeat("r", 124)))), code: 1002},
		{name: "ping without FIN", frames: frames(frame(false, opPing, hello)), code: 1002},
		{name: "close without FIN", frames: frames(frame(false, opClose, closePayload(1000, ""))), code: 1002},
		{name: "ping 125 bytes", frames: frames(frame(true, opPing, bytes.Repeat([]byte("p"), 125)), clientDone), want: []serverFrame{pong(strings.Repeat("p", 125))}, code: 1000},
		{name: "empty ping", frames: frames(frame(true, opPing, nil), clientDone), want: []serverFrame{pong("")}, code: 1000},
		{name: "unsolicited pong ignored", frames: frames(frame(true, opPong, hello), frame(true, opText, []byte("after pong")), clientDone), want: []serverFrame{echoText("after pong")}, code: 1000},

		// Fragmentation (section 5.4).
		{name: "continuation without start", frames: frames(frame(true, opCont, hello)), code: 1002},
		{name: "non-final continuation without start", frames: frames(frame(false, opCont, hello)), code: 1002},
		{name: "continuation after a complete message", frames: frames(frame(true, opText, hello), frame(true, opCont, hello)), want: []serverFrame{echoText("hello")}, code: 1002},
		{name: "text inside fragmented text", frames: frames(frame(false, opText, hello), frame(true, opText, hello)), code: 1002},
		{name: "binary inside fragmented text", frames: frames(frame(false, opText, hello), frame(true, opBinary, hello)), code: 1002},
		{name: "text inside fragmented binary", frames: frames(frame(false, opBinary, hello), frame(false, opCont, hello), frame(false, opText, hello)), code: 1002},
		{name: "fragmented text echoed whole", frames: frames(frame(false, opText, []byte("frag")), frame(false, opCont, nil), frame(false, opCont, []byte("men")), frame(true, opCont, []byte("ted")), clientDone), want: []serverFrame{echoText("fragmented")}, code: 1000},
		{name: "fragmented binary echoed whole", frames: frames(frame(false, opBinary, []byte{0, 1}), frame(true, opCont, []byte{2, 0xff}), clientDone), want: []serverFrame{echoBinary([]byte{0, 1, 2, 0xff})}, code: 1000},
		{name: "ping between fragments", frames: frames(frame(false, opText, []byte("Hello, ")), frame(true, opPing, []byte("ping!")), frame(true, opCont, []byte("world")), clientDone), want: []serverFrame{pong("ping!"), echoText("Hello, world")}, code: 1000},
		{name: "ping and pong between fragments", frames: frames(frame(false, opBinary, []byte{1}), frame(true, opPing, nil), frame(false, opCont, []byte{2}), frame(true, opPong, hello), frame(true, opPing, []byte("2nd")), frame(true, opCont, []byte{3}), clientDone), want: []serverFrame{pong(""), pong("2nd"), echoBinary([]byte{1, 2, 3})}, code: 1000},

		// UTF-8 (section 8.1).
		{name: "text invalid UTF-8", frames: frames(frame(true, opText, []byte("hello\xffworld"))), code: 1007},
		{name: "text overlong encoding", frames: frames(frame(true, opText, []byte("a\xc0\xafb"))), code: 1007},
		{name: "text surrogate", frames: frames(frame(true, opText, []byte("a\xed\xa0\x80b"))), code: 1007},
		{name: "text above U+10FFFF", frames: frames(frame(true, opText, []byte("a\xf4\x90\x80\x80"))), code: 1007},
		{name: "text ends inside a character", frames: frames(frame(true, opText, []byte("a\xe2\x82"))), code: 1007},
		{name: "text invalid across fragments, each incomplete", frames: frames(frame(false, opText, []byte("a\xce")), frame(true, opCont, []byte("\xf0\x90"))), code: 1007},
		// No final fragment is sent: the server must fail on the byte that
		// makes the message invalid, not at the end of the message.
		{name: "text invalid across fragments, no final fragment", frames: frames(frame(false, opText, []byte("a\xce")), frame(false, opCont, []byte("\xf0\x90"))), code: 1007},
		{name: "text invalid across fragments, second valid alone", frames: frames(frame(false, opText, []byte("\xce")), frame(true, opCont, []byte("\xf0\x90\x80\x80"))), code: 1007},
		{name: "text invalid in the last fragment", frames: frames(frame(false, opText, hello), frame(true, opCont, []byte("\x80"))), code: 1007},
		// Fail fast: the header declares 1000 bytes, only 10 come, the 6th
		// is invalid. The server must not wait for the other 990.
		{name: "text invalid fails fast", frames: frames(rawFrame(bitFIN|opText, true, 1000, []byte("hell\x00\xffabcd"))[:4+4+10]), code: 1007},
		{name: "text invalid fails fast in a fragment", frames: frames(frame(false, opText, hello), rawFrame(bitFIN|opCont, true, 1000, []byte("hell\x00\xffabcd"))[:4+4+10]), code: 1007},
		{name: "text valid two-byte char split across fragments", frames: frames(frame(false, opText, []byte("a\xce")), frame(true, opCont, []byte("\xbab")), clientDone), want: []serverFrame{echoText("aκb")}, code: 1000},
		{name: "text valid four-byte char split in three fragments", frames: frames(frame(false, opText, []byte("\xf0\x9f")), frame(false, opCont, []byte("\x98")), frame(true, opCont, []byte("\x80!")), clientDone), want: []serverFrame{echoText("😀!")}, code: 1000},
		{name: "binary need not be UTF-8", frames: frames(frame(true, opBinary, []byte{0xff, 0xfe, 0xc0}), clientDone), want: []serverFrame{echoBinary([]byte{0xff, 0xfe, 0xc0})}, code: 1000},

		// Close frames (sections 5.5.1 and 7.4).
		{name: "close with 1-byte payload", frames: frames(frame(true, opClose, []byte{0x03})), code: 1002},
		{name: "close with valid code and invalid UTF-8 reason", frames: frames(frame(true, opClose, closePayload(1000, "bye\xff"))), code: 1007},
		{name: "close with valid code and truncated UTF-8 reason", frames: frames(frame(true, opClose, closePayload(4000, "bye\xe2\x82"))), code: 1007},
		{name: "close with valid code and UTF-8 reason", frames: frames(frame(true, opClose, closePayload(4001, "bye ✓"))), code: 4001},
		{name: "empty close", frames: frames(frame(true, opClose, nil)), code: 1000},
		{name: "close after a message", frames: frames(frame(true, opText, hello), closeFrame(1001, "")), want: []serverFrame{echoText("hello")}, code: 1001},

		// Message size limit (MaxMessageBytes 1024).
		{name: "text of exactly the limit", frames: frames(frame(true, opText, bytes.Repeat([]byte("t"), conformanceMaxMessageBytes)), clientDone), want: []serverFrame{echoText(strings.Repeat("t", conformanceMaxMessageBytes))}, code: 1000},
		{name: "binary one byte over the limit", frames: frames(frame(true, opBinary, bytes.Repeat([]byte{7}, conformanceMaxMessageBytes+1))), code: 1009},
		{name: "fragments of exactly the limit", frames: frames(frame(false, opBinary, bytes.Repeat([]byte{1}, 1000)), frame(true, opCont, bytes.Repeat([]byte{2}, 24)), clientDone), want: []serverFrame{echoBinary(append(bytes.Repeat([]byte{1}, 1000), bytes.Repeat([]byte{2}, 24)...))}, code: 1000},
		{name: "fragments over the limit", frames: frames(frame(false, opText, bytes.Repeat([]byte("a"), 600)), frame(true, opCont, bytes.Repeat([]byte("b"), 600))), code: 1009},
		{name: "many small fragments over the limit", frames: manyFragments(11, 100), code: 1009},
		// Only the header is sent: the server must refuse by the declared
		// length, without allocating or waiting for the payload.
		{name: "declared length 2^62", frames: frames(rawFrame(bitFIN|opBinary, true, 1<<62, nil)), code: 1009},
		{name: "declared length 2^63-1", frames: frames(rawFrame(bitFIN|opText, true, 1<<63-1, nil)), code: 1009},
		{name: "declared length 2^63-1 in a continuation", frames: frames(frame(false, opBinary, hello), rawFrame(bitFIN|opCont, true, 1<<63-1, nil)), code: 1009},
		{name: "64-bit length with MSB set", frames: frames(rawFrame(bitFIN|opBinary, true, 1<<63, nil)), code: 1002},
		{name: "64-bit length all ones", frames: frames(rawFrame(bitFIN|opBinary, true, 1<<64-1, nil)), code: 1002},
	}
	// Reserved opcodes: 3-7 for data, 0xB-0xF for control.
	for _, op := range []byte{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		cases = append(cases,
			conformanceCase{name: fmt.Sprintf("reserved opcode %#x", op), frames: frames(rawFrame(bitFIN|op, true, 5, hello)), code: 1002},
			conformanceCase{name: fmt.Sprintf("reserved opcode %#x without FIN", op), frames: frames(rawFrame(op, true, 0, nil)), code: 1002},
		)
	}
	// Close codes a peer must not send.
	for _, code := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, conformanceCase{name: fmt.Sprintf("close code %d invalid", code), frames: frames(closeFrame(code, "")), code: 1002})
	}
	// Close codes a peer may send: echoed.
	for _, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		cases = append(cases, conformanceCase{name: fmt.Sprintf("close code %d echoed", code), frames: frames(closeFrame(code, "")), code: int(code)})
	}
	return cases
}

// manyFragments is a binary message of n fragments of size bytes each.
func manyFragments(n, size int) [][]byte {
	var out [][]byte
	for i := range n {
		op := opCont
		if i == 0 {
			op = opBinary
		}
		out = append(out, frame(i == n-1, op, bytes.Repeat([]byte{byte(i)}, size)))
	}
	return out
}

// TestConformance runs the RFC 6455 table against /echo twice: with each
// frame written whole, and with every byte written by a Write of its own.
// Both runs must give the same result: the incremental reader must not care
// how the bytes are split.
func TestConformance(t *testing.T) {
	_, addr := startServer(t, wsconn.Config{MaxMessageBytes: conformanceMaxMessageBytes})
	for _, mode := range []struct {
		name     string
		bytewise bool
	}{{"whole", false}, {"bytewise", true}} {
		t.Run(mode.name, func(t *testing.T) {
			for _, tc := range conformanceCases() {
				t.Run(tc.name, func(t *testing.T) {
					t.Parallel()
					c := dialWS(t, addr)
					if err := c.writeFrames(tc.frames, mode.bytewise); err != nil {
						t.Logf("write stopped: %v", err)
					}
					got, code := c.readUntilClose(t)
					assert.Equal(t, tc.want, got, "frames before the close frame")
					assert.Equal(t, tc.code, code, "close code")
					c.requireEOF(t)
				})
			}
		})
	}
}

// httpRoundTrip writes request on a new TCP connection and reads the
// response; the server must close the connection after it (the request
// asks for close, or is refused before a handler runs).
func httpRoundTrip(t *testing.T, addr, request string) (*http.Response, string) {
	t.Helper()
	conn := dialRaw(t, addr)
	require.NoError(t, conn.SetDeadline(time.Now().Add(rawTimeout)))
	_, err := conn.Write([]byte(request))
	require.NoError(t, err)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	// Connection: close: nothing follows the response.
	_, err = br.ReadByte()
	require.ErrorIs(t, err, io.EOF, "want EOF after the response")
	return resp, string(body)
}

// TestUpgradeEdgeCases covers the HTTP side of the port over raw TCP.
func TestUpgradeEdgeCases(t *testing.T) {
	_, addr := startServer(t, wsconn.Config{
		MaxHeaderBytes:   1024,
		HandshakeTimeout: 300 * time.Millisecond,
	})

	t.Run("plain GET /healthz", func(t *testing.T) {
		t.Parallel()
		resp, body := httpRoundTrip(t, addr, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "ok", strings.TrimSpace(body))
	})

	t.Run("plain GET unknown path", func(t *testing.T) {
		t.Parallel()
		resp, _ := httpRoundTrip(t, addr, "GET /nope HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	})

	t.Run("upgrade to unknown path", func(t *testing.T) {
		t.Parallel()
		resp, _ := httpRoundTrip(t, addr, upgradeRequest("/nope", newSecKey()))
		assert.Equal(t, http.StatusNotFound, resp.StatusCode)
	})

	t.Run("upgrade without Sec-WebSocket-Key", func(t *testing.T) {
		t.Parallel()
		resp, _ := httpRoundTrip(t, addr, upgradeRequest("/echo", ""))
		assert.Equal(t, http.StatusBadRequest, resp.StatusCode)
	})

	t.Run("upgrade head over MaxHeaderBytes", func(t *testing.T) {
		t.Parallel()
		resp, _ := httpRoundTrip(t, addr, upgradeRequest("/echo", newSecKey(), "X-Padding: "+strings.Repeat("p", 2000)))
		assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	})

	t.Run("plain head over MaxHeaderBytes", func(t *testing.T) {
		t.Parallel()
		resp, _ := httpRoundTrip(t, addr, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: "+strings.Repeat("p", 2000)+"\r\n\r\n")
		assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	})

	t.Run("head over MaxHeaderBytes without its end", func(t *testing.T) {
		t.Parallel()
		// The head never ends: the server must answer once it has seen
		// more than the limit, not wait for the blank line.
		conn := dialRaw(t, addr)
		require.NoError(t, conn.SetDeadline(time.Now().Add(rawTimeout)))
		_, err := conn.Write([]byte("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: " + strings.Repeat("p", 2000)))
		require.NoError(t, err)
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		require.NoError(t, err)
		assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, resp.StatusCode)
	})

	t.Run("stalled request is dropped after HandshakeTimeout", func(t *testing.T) {
		t.Parallel()
		conn := dialRaw(t, addr)
		_, err := conn.Write([]byte("GET /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"))
		require.NoError(t, err)
		// HandshakeTimeout is 300ms; allow far more before calling it a hang.
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(5*time.Second)))
		n, err := conn.Read(make([]byte, 1))
		assert.Zero(t, n)
		require.ErrorIs(t, err, io.EOF, "the server must close a connection whose request stalls")
	})

	t.Run("frames in the same write as the upgrade", func(t *testing.T) {
		t.Parallel()
		conn := dialRaw(t, addr)
		require.NoError(t, conn.SetDeadline(time.Now().Add(rawTimeout)))
		key := newSecKey()
		var out []byte
		out = append(out, upgradeRequest("/echo", key)...)
		out = append(out, frame(true, opText, []byte("early bird"))...)
		out = append(out, frame(false, opBinary, []byte{1, 2})...)
		out = append(out, frame(true, opPing, []byte("p"))...)
		out = append(out, frame(true, opCont, []byte{3})...)
		cut := frame(true, opText, []byte("cut"))
		out = append(out, cut[:3]...) // a header cut short, kept for the next read
		_, err := conn.Write(out)
		require.NoError(t, err)

		c := &rawClient{conn: conn, br: bufio.NewReader(conn)}
		readUpgradeResponse(t, c.br, key)
		for _, want := range []serverFrame{echoText("early bird"), pong("p"), echoBinary([]byte{1, 2, 3})} {
			f, err := c.readFrame()
			require.NoError(t, err)
			require.Equal(t, want, f)
		}
		require.NoError(t, c.writeFrames(frames(cut[3:], clientDone), false))
		got, code := c.readUntilClose(t)
		assert.Equal(t, []serverFrame{echoText("cut")}, got)
		assert.Equal(t, 1000, code)
		c.requireEOF(t)
	})
}

// TestUpgradeRejections checks that a WebSocket upgrade that fails keeps the
// status of its failure: the application's Reject status, or the handshake
// error's, rather than being served as a plain HTTP request.
func TestUpgradeRejections(t *testing.T) {
	_, addr := startServer(t, wsconn.Config{
		Upgrade: func(r *wsconn.Request) (wsconn.Handler, error) {
			switch r.Path {
			case "/echo":
				return wsconn.Echo{}, nil
			case "/private":
				return nil, wsconn.Reject(http.StatusForbidden, "forbidden")
			}
			return nil, nil
		},
	})
	for _, tc := range []struct {
		name    string
		request string
		status  int
	}{
		{"Reject status from Config.Upgrade", upgradeRequest("/private", newSecKey()), http.StatusForbidden},
		{"nil Handler gives 404", upgradeRequest("/nope", newSecKey()), http.StatusNotFound},
		{"missing Sec-WebSocket-Key", upgradeRequest("/echo", ""), http.StatusBadRequest},
		{"malformed Sec-WebSocket-Key", upgradeRequest("/echo", "c2hvcnQ="), http.StatusBadRequest},
		{"unsupported Sec-WebSocket-Version", strings.Replace(upgradeRequest("/echo", newSecKey()), "Version: 13", "Version: 8", 1), http.StatusUpgradeRequired},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			resp, _ := httpRoundTrip(t, addr, tc.request)
			assert.Equal(t, tc.status, resp.StatusCode)
		})
	}
}
