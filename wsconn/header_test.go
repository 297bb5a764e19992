package wsconn_test

import (
	"bufio"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/wsconn"
)

// rawHead builds a request head from its lines, each ended by eol.
func rawHead(eol string, lines ...string) string {
	return strings.Join(lines, eol) + eol + eol
}

// TestUpgradeHeaderLists: header values are comma lists, and a list may be
// split over lines (RFC 7230 3.2.2), as proxies send them; a second
// Sec-WebSocket-Key is refused; a head whose lines end in bare LF gets an
// answer, not a silent close.
func TestUpgradeHeaderLists(t *testing.T) {
	_, addr := startServer(t, wsconn.Config{HandshakeTimeout: 2 * time.Second})
	key := newSecKey()
	for _, tc := range []struct {
		name   string
		head   string
		status int
	}{
		{"Connection over two lines", rawHead("\r\n", "GET /echo HTTP/1.1", "Host: x", "Upgrade: websocket",
			"Connection: keep-alive", "Connection: Upgrade", "Sec-WebSocket-Key: "+key, "Sec-WebSocket-Version: 13"), 101},
		{"Connection list", rawHead("\r\n", "GET /echo HTTP/1.1", "Host: x", "Upgrade: websocket",
			"Connection: keep-alive, Upgrade", "Sec-WebSocket-Key: "+key, "Sec-WebSocket-Version: 13"), 101},
		{"Upgrade list", rawHead("\r\n", "GET /echo HTTP/1.1", "Host: x", "Upgrade: h2c, websocket",
			"Connection: Upgrade", "Sec-WebSocket-Key: "+key, "Sec-WebSocket-Version: 13"), 101},
		{"both", rawHead("\r\n", "GET /echo HTTP/1.1", "Host: x", "Connection: keep-alive", "Upgrade: h2c,WebSocket",
			"Sec-WebSocket-Key: "+key, "connection: upgrade", "Sec-WebSocket-Version: 13"), 101},
		{"no Connection line names upgrade", rawHead("\r\n", "GET /echo HTTP/1.1", "Host: x", "Upgrade: websocket",
			"Connection: keep-alive", "Connection: close", "Sec-WebSocket-Key: "+key, "Sec-WebSocket-Version: 13"), 400},
		{"two Sec-WebSocket-Key", rawHead("\r\n", "GET /echo HTTP/1.1", "Host: x", "Upgrade: websocket",
			"Connection: Upgrade", "Sec-WebSocket-Key: "+key, "Sec-WebSocket-Key: "+newSecKey(), "Sec-WebSocket-Version: 13"), 400},
		{"bare LF", rawHead("\n", "GET /echo HTTP/1.1", "Host: x", "Upgrade: websocket",
			"Connection: Upgrade", "Sec-WebSocket-Key: "+key, "Sec-WebSocket-Version: 13"), 400},
		{"bare LF, plain GET", rawHead("\n", "GET /healthz HTTP/1.1", "Host: x"), 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := dialRaw(t, addr)
			require.NoError(t, conn.SetDeadline(time.Now().Add(time.Second))) // well before the handshake timeout
			_, err := conn.Write([]byte(tc.head))
			require.NoError(t, err)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err, "an answer, not a silent close")
			_ = resp.Body.Close()
			assert.Equal(t, tc.status, resp.StatusCode)
			if tc.status == http.StatusSwitchingProtocols {
				assert.Equal(t, secAccept(key), resp.Header.Get("Sec-WebSocket-Accept"))
				c := &rawClient{conn: conn, br: br}
				require.NoError(t, c.writeFrames(frames(frame(true, opText, []byte("hi"))), false))
				f, err := c.readFrame()
				require.NoError(t, err)
				assert.Equal(t, echoText("hi"), f)
			}
		})
	}
}
