package wsconn_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/wsconn"
)

func randomBytes(t testing.TB, n int) []byte {
	p := make([]byte, n)
	_, err := rand.Read(p)
	require.NoError(t, err)
	return p
}

// echoCases are the messages both client libraries send through /echo.
func echoCases(t testing.TB) []struct {
	name   string
	binary bool
	data   []byte
} {
	return []struct {
		name   string
		binary bool
		data   []byte
	}{
		{"empty text", false, nil},
		{"empty binary", true, nil},
		{"small text", false, []byte("hello, ünïcødé ✓")},
		{"small binary", true, []byte{0, 1, 2, 0xff, 0xfe}},
		{"64KiB text", false, []byte(strings.Repeat("abcdefgh", 8<<10))},
		{"64KiB binary", true, randomBytes(t, 64<<10)},
		{"16MiB binary", true, randomBytes(t, 16<<20)},
		{"16MiB text", false, []byte(strings.Repeat("0123456789abcdef", 1<<20))},
	}
}

const bigLimit = 16 << 20

func TestEchoGorilla(t *testing.T) {
	_, addr := startServer(t, wsconn.Config{MaxMessageBytes: bigLimit})
	d := gorilla.Dialer{ReadBufferSize: 4096, WriteBufferSize: 4096}
	c, resp, err := d.Dial("ws://"+addr+"/echo", nil)
	require.NoError(t, err)
	defer c.Close()
	assert.Equal(t, 101, resp.StatusCode)
	c.SetReadLimit(bigLimit + 1)

	for _, tc := range echoCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			typ := gorilla.TextMessage
			if tc.binary {
				typ = gorilla.BinaryMessage
			}
			require.NoError(t, c.WriteMessage(typ, tc.data))
			gotType, got, err := c.ReadMessage()
			require.NoError(t, err)
			assert.Equal(t, typ, gotType)
			assert.True(t, bytes.Equal(tc.data, got), "payload differs (len %d, want %d)", len(got), len(tc.data))
		})
	}

	t.Run("fragmented", func(t *testing.T) {
		// gorilla fragments a message written through NextWriter when it
		// outgrows the write buffer (4 KiB here).
		msg := []byte(strings.Repeat("fragmént ", 4000))
		w, err := c.NextWriter(gorilla.TextMessage)
		require.NoError(t, err)
		for i := 0; i < len(msg); i += 1000 {
			_, err := w.Write(msg[i:min(i+1000, len(msg))])
			require.NoError(t, err)
		}
		require.NoError(t, w.Close())
		typ, got, err := c.ReadMessage()
		require.NoError(t, err)
		assert.Equal(t, gorilla.TextMessage, typ)
		assert.Equal(t, msg, got)
	})

	t.Run("ping pong", func(t *testing.T) {
		pong := make(chan string, 1)
		c.SetPongHandler(func(data string) error { pong <- data; return nil })
		require.NoError(t, c.WriteControl(gorilla.PingMessage, []byte("are you there"), time.Now().Add(time.Second)))
		// The pong handler runs inside ReadMessage: send a message to read.
		require.NoError(t, c.WriteMessage(gorilla.TextMessage, []byte("after ping")))
		_, got, err := c.ReadMessage()
		require.NoError(t, err)
		assert.Equal(t, "after ping", string(got))
		assert.Equal(t, "are you there", <-pong)
	})

	t.Run("close with code and reason", func(t *testing.T) {
		msg := gorilla.FormatCloseMessage(4001, "bye now")
		require.NoError(t, c.WriteControl(gorilla.CloseMessage, msg, time.Now().Add(time.Second)))
		_, _, err := c.ReadMessage()
		var ce *gorilla.CloseError
		require.ErrorAs(t, err, &ce)
		assert.Equal(t, 4001, ce.Code)
	})
}

// coderTimeout bounds each subtest of TestEchoCoder: a budget of its own,
// since the 16 MiB echoes take seconds under -race on a loaded machine.
const coderTimeout = 30 * time.Second

// testContext returns a context that ends after coderTimeout or with t.
func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), coderTimeout)
	t.Cleanup(cancel)
	return ctx
}

func TestEchoCoder(t *testing.T) {
	_, addr := startServer(t, wsconn.Config{MaxMessageBytes: bigLimit})
	c, _, err := websocket.Dial(testContext(t), "ws://"+addr+"/echo", nil)
	require.NoError(t, err)
	defer c.CloseNow()
	c.SetReadLimit(bigLimit + 1)

	for _, tc := range echoCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			ctx := testContext(t)
			typ := websocket.MessageText
			if tc.binary {
				typ = websocket.MessageBinary
			}
			require.NoError(t, c.Write(ctx, typ, tc.data))
			gotType, got, err := c.Read(ctx)
			require.NoError(t, err)
			assert.Equal(t, typ, gotType)
			assert.True(t, bytes.Equal(tc.data, got), "payload differs (len %d, want %d)", len(got), len(tc.data))
		})
	}

	t.Run("fragmented", func(t *testing.T) {
		ctx := testContext(t)
		w, err := c.Writer(ctx, websocket.MessageBinary)
		require.NoError(t, err)
		var want []byte
		for i := range 5 {
			part := bytes.Repeat([]byte{byte(i)}, 3000)
			want = append(want, part...)
			_, err := w.Write(part) // each Write is a frame of its own
			require.NoError(t, err)
		}
		require.NoError(t, w.Close())
		typ, got, err := c.Read(ctx)
		require.NoError(t, err)
		assert.Equal(t, websocket.MessageBinary, typ)
		assert.Equal(t, want, got)
	})

	t.Run("ping pong", func(t *testing.T) {
		ctx := testContext(t)
		// Ping waits for the pong, which is read by a concurrent Read.
		readErr := make(chan error, 1)
		rctx, rcancel := context.WithCancel(ctx)
		go func() { _, _, err := c.Read(rctx); readErr <- err }()
		require.NoError(t, c.Ping(ctx))
		rcancel()
		<-readErr
	})
}

func TestCloseCoder(t *testing.T) {
	_, addr := startServer(t, wsconn.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/echo", nil)
	require.NoError(t, err)
	// Close sends the close frame and waits for the server's answer.
	require.NoError(t, c.Close(websocket.StatusCode(4002), "done"))
}
