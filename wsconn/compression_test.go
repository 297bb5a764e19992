package wsconn_test

import (
	"bufio"
	"bytes"
	"compress/flate"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/wsconn"
)

// deflated compresses p as a permessage-deflate sender does: a flushed
// deflate stream without its final 0x00 0x00 0xff 0xff.
func deflated(t testing.TB, p []byte) []byte {
	return deflatedLevel(t, p, flate.BestSpeed)
}

func deflatedLevel(t testing.TB, p []byte, level int) []byte {
	t.Helper()
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, level)
	require.NoError(t, err)
	_, err = w.Write(p)
	require.NoError(t, err)
	require.NoError(t, w.Flush())
	return bytes.TrimSuffix(b.Bytes(), []byte{0, 0, 0xff, 0xff})
}

// dialOffer upgrades a raw connection at /echo offering extensions, and
// returns it with the response's Sec-WebSocket-Extensions.
func dialOffer(t testing.TB, addr, offer string) (*rawClient, string) {
	t.Helper()
	conn := dialRaw(t, addr)
	key := newSecKey()
	_, err := conn.Write([]byte(upgradeRequest("/echo", key, "Sec-WebSocket-Extensions: "+offer)))
	require.NoError(t, err)
	br := bufio.NewReaderSize(conn, 256)
	require.NoError(t, conn.SetReadDeadline(time.Now().Add(rawTimeout)))
	resp, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	return &rawClient{conn: conn, br: br}, resp.Header.Get("Sec-WebSocket-Extensions")
}

// compressibleCases are JSON-like messages of several sizes.
func compressibleCases() [][]byte {
	var out [][]byte
	for _, n := range []int{0, 1, 100, 4 << 10, 200 << 10} {
		out = append(out, []byte(strings.Repeat(`{"topic":"prices","data":{"bid":101.5,"ask":101.7}}`, n/50+1)[:n]))
	}
	return out
}

func TestCompressionGorilla(t *testing.T) {
	srv, addr := startServer(t, wsconn.Config{})
	d := gorilla.Dialer{EnableCompression: true}
	c, resp, err := d.Dial("ws://"+addr+"/echo", nil)
	require.NoError(t, err)
	defer c.Close()
	ext := resp.Header.Get("Sec-WebSocket-Extensions")
	assert.Contains(t, ext, "permessage-deflate")
	assert.Contains(t, ext, "server_no_context_takeover")
	assert.Contains(t, ext, "client_no_context_takeover")

	cases := compressibleCases()
	for _, msg := range cases {
		require.NoError(t, c.WriteMessage(gorilla.TextMessage, msg))
		typ, got, err := c.ReadMessage()
		require.NoError(t, err)
		assert.Equal(t, gorilla.TextMessage, typ)
		assert.Equal(t, msg, got)
	}
	// gorilla compresses every message once it is negotiated.
	assert.Equal(t, uint64(len(cases)), srv.Stats().MessagesInflated)
	assert.Equal(t, uint64(1), srv.Stats().CompressedUpgrades)
}

// coder/websocket asks for context takeover of its own messages unless told
// otherwise; the server's answer tells it otherwise, in both modes.
func TestCompressionCoder(t *testing.T) {
	for _, mode := range []websocket.CompressionMode{websocket.CompressionContextTakeover, websocket.CompressionNoContextTakeover} {
		srv, addr := startServer(t, wsconn.Config{})
		c, resp, err := websocket.Dial(testContext(t), "ws://"+addr+"/echo", &websocket.DialOptions{
			CompressionMode: mode, CompressionThreshold: 1,
		})
		require.NoError(t, err, "mode %v", mode)
		assert.Contains(t, resp.Header.Get("Sec-WebSocket-Extensions"), "client_no_context_takeover")
		c.SetReadLimit(1 << 20)
		cases := compressibleCases()
		for _, msg := range cases {
			for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
				require.NoError(t, c.Write(testContext(t), typ, msg))
				gotType, got, err := c.Read(testContext(t))
				require.NoError(t, err, "mode %v", mode)
				assert.Equal(t, typ, gotType)
				assert.Equal(t, msg, got, "mode %v", mode)
			}
		}
		assert.NotZero(t, srv.Stats().MessagesInflated, "mode %v: nothing came compressed", mode)
		require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	}
}

// A zip bomb: 16 MiB of zeros compressed to about 16 KiB, sent to a server
// whose messages may be 64 KiB. It is closed with 1009 (what inflating it
// allocates is bounded by the limit: TestInflateBomb).
func TestCompressionBomb(t *testing.T) {
	_, addr := startServer(t, wsconn.Config{MaxMessageBytes: 64 << 10})
	c, ext := dialOffer(t, addr, "permessage-deflate")
	require.Contains(t, ext, "permessage-deflate")
	bomb := deflatedLevel(t, make([]byte, 16<<20), flate.BestCompression)
	require.Less(t, len(bomb), 64<<10, "the bomb itself is within the limit")
	require.NoError(t, c.writeFrames([][]byte{rawFrame(bitFIN|bitRSV1|opBinary, true, uint64(len(bomb)), bomb)}, false))
	_, code := c.readUntilClose(t)
	assert.Equal(t, 1009, code)
}

func TestCompressionErrors(t *testing.T) {
	_, addr := startServer(t, wsconn.Config{})
	compressed := func(op byte, p []byte) []byte {
		return rawFrame(bitFIN|bitRSV1|op, true, uint64(len(p)), p)
	}
	for _, tc := range []struct {
		name   string
		frames [][]byte
		code   int
	}{
		{"not deflate", [][]byte{compressed(opText, []byte{0xff, 0xff, 0xff})}, 1007},
		{"invalid UTF-8 once inflated", [][]byte{compressed(opText, deflated(t, []byte("caf\xc3")))}, 1007},
		{"RSV1 on a continuation", [][]byte{frame(false, opText, []byte("a")), rawFrame(bitFIN|bitRSV1|opCont, true, 1, []byte("b"))}, 1002},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := dialOffer(t, addr, "permessage-deflate")
			require.NoError(t, c.writeFrames(tc.frames, false))
			_, code := c.readUntilClose(t)
			assert.Equal(t, tc.code, code)
		})
	}
}

// With compression off the offer is turned away, and a compressed frame is
// a protocol error, as before the extension existed.
func TestCompressionDisabled(t *testing.T) {
	_, addr := startServer(t, wsconn.Config{DisableCompression: true})
	c, ext := dialOffer(t, addr, "permessage-deflate; client_no_context_takeover")
	assert.Empty(t, ext)
	p := deflated(t, []byte("hello"))
	require.NoError(t, c.writeFrames([][]byte{rawFrame(bitFIN|bitRSV1|opText, true, uint64(len(p)), p)}, false))
	_, code := c.readUntilClose(t)
	assert.Equal(t, 1002, code)

	// gorilla goes on uncompressed.
	d := gorilla.Dialer{EnableCompression: true}
	gc, resp, err := d.Dial("ws://"+addr+"/echo", nil)
	require.NoError(t, err)
	defer gc.Close()
	assert.Empty(t, resp.Header.Get("Sec-WebSocket-Extensions"))
	require.NoError(t, gc.WriteMessage(gorilla.TextMessage, []byte("plain")))
	_, got, err := gc.ReadMessage()
	require.NoError(t, err)
	assert.Equal(t, "plain", string(got))
}

// What the Autobahn testsuite's sections 12 and 13 do: compressed messages
// of 16 B to 128 KiB, text and binary, whole or cut into frames of a fixed
// size (RSV1 on the first only), echoed by /echo, under the offers those
// sections make.
func TestCompressedEchoAutobahnLike(t *testing.T) {
	_, addr := startServer(t, wsconn.Config{})
	offers := []string{
		"permessage-deflate",
		"permessage-deflate; client_max_window_bits",
		"permessage-deflate; client_no_context_takeover; client_max_window_bits",
		"permessage-deflate; server_no_context_takeover",
		"permessage-deflate; server_max_window_bits=9; client_max_window_bits=9",
		"permessage-deflate; client_max_window_bits=15; server_max_window_bits=8",
	}
	for i, offer := range offers {
		c, ext := dialOffer(t, addr, offer)
		require.Contains(t, ext, "permessage-deflate", offer)
		sizes := []int{16, 64, 256, 1024, 4096, 8192, 16384, 32768, 65536, 131072}
		if i > 0 {
			sizes = []int{16, 4096, 131072} // the whole matrix once is enough
		}
		for _, size := range sizes {
			for _, frag := range []int{0, 256, 1024, 4096, 32768} {
				for _, op := range []byte{opText, opBinary} {
					msg := []byte(strings.Repeat("Hello, Autobahn! ünïcødé 0123456789 ", size/36+1)[:size])
					if op == opText {
						msg = []byte(strings.ToValidUTF8(string(msg), "?"))
					}
					p := deflated(t, msg)
					var frames [][]byte
					if frag == 0 || frag >= len(p) {
						frames = append(frames, rawFrame(bitFIN|bitRSV1|op, true, uint64(len(p)), p))
					} else {
						for i := 0; i < len(p); i += frag {
							chunk := p[i:min(i+frag, len(p))]
							b0 := opCont
							if i == 0 {
								b0 = bitRSV1 | op
							}
							if i+frag >= len(p) {
								b0 |= bitFIN
							}
							frames = append(frames, rawFrame(b0, true, uint64(len(chunk)), chunk))
						}
					}
					require.NoError(t, c.writeFrames(frames, false))
					require.NoError(t, c.conn.SetReadDeadline(time.Now().Add(rawTimeout)))
					f, err := c.readFrame()
					require.NoError(t, err, "offer %q size %d frag %d", offer, size, frag)
					assert.Equal(t, op, f.Op)
					assert.True(t, f.Fin)
					require.Equal(t, msg, f.Payload, "offer %q size %d frag %d", offer, size, frag)
				}
			}
		}
	}
}
