package wsconn

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockedBuffer is a bytes.Buffer safe for the server's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestRefusalLog: refused handshakes are logged at info, one line per
// status a second at most, with the count since the previous line, and with
// neither the request's URL nor its headers (a token may be in either).
func TestRefusalLog(t *testing.T) {
	// A real refusal is logged.
	logs, _ := refuseUpgrade(t, slog.LevelInfo, func(*Request) (Handler, error) { return nil, Reject(404, "no such endpoint") },
		"/nope?token=SECRET", "Authorization: Bearer SECRET\r\n")
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "handshake refused") }, 5*time.Second, 5*time.Millisecond)
	assert.Contains(t, logs.String(), "status=404")
	assert.Contains(t, logs.String(), `reason="no such endpoint"`)
	assert.NotContains(t, logs.String(), "SECRET")

	// A flood: one line a second per status, with the count. (The
	// server's refusal log alone, so that its clock can be set.)
	var r refusalLog
	now := time.Now()
	var lines []refusalLine
	note := func(status int, reason string) {
		if l, ok := r.note(now, statusIndex(status), status, reason); ok {
			lines = append(lines, l)
		}
	}
	for range 100 {
		note(401, "bad token")
	}
	note(431, "head too large")
	now = now.Add(time.Second)
	note(401, "bad token")
	assert.Equal(t, []refusalLine{{401, "bad token", 1}, {431, "head too large", 1}, {401, "bad token", 100}}, lines,
		"the 99 held back come with the next after a second")
}

// TestRefusalLogFlushed: refusals held back within a second are logged
// once it has passed, with or without a later refusal of their status; they
// waited for the next, and the last of a burst was never logged. Those
// held back when the server closes are logged as it does.
func TestRefusalLogFlushed(t *testing.T) {
	var r refusalLog
	start := time.Now()
	i := statusIndex(401)
	_, ok := r.note(start, i, 401, "bad token")
	require.True(t, ok, "the first is logged at once")
	for range 4 {
		_, ok := r.note(start, i, 401, "expired token")
		require.False(t, ok, "held back")
	}
	assert.Empty(t, r.due(start.Add(500*time.Millisecond), nil), "within the second")
	assert.Equal(t, []refusalLine{{401, "expired token", 4}}, r.due(start.Add(time.Second), nil))
	assert.Empty(t, r.due(start.Add(3*time.Second), nil), "nothing more held")

	// A server that closes logs what it held back.
	var logs lockedBuffer
	s, err := NewServer(Config{Logger: slog.New(slog.NewTextHandler(&logs, nil)),
		Upgrade: func(*Request) (Handler, error) { return nil, nil }})
	require.NoError(t, err)
	s.logRefusal(503, "over the connection limit")
	s.logRefusal(503, "over the connection limit")
	s.logRefusal(503, "over the per-IP connection limit")
	require.NoError(t, s.Close())
	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 2, "%q", lines)
	assert.Contains(t, lines[0], "count=1")
	assert.Contains(t, lines[1], `reason="over the per-IP connection limit" count=2`)
}

// TestRefusalLogRedacted: a rejection whose reason carries what the request
// sent (here its path, with a token in it) gives the client that reason and
// the logs, at any level, the redacted one.
func TestRefusalLogRedacted(t *testing.T) {
	logs, c := refuseUpgrade(t, slog.LevelDebug, func(r *Request) (Handler, error) {
		return nil, RejectRedacted(404, "no WebSocket endpoint at "+r.Path, "no WebSocket endpoint at this path", nil)
	}, "/ws/token/SECRET", "")
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	resp, err := io.ReadAll(c)
	require.NoError(t, err)
	assert.Contains(t, string(resp), "404")
	assert.Contains(t, string(resp), "no WebSocket endpoint at /ws/token/SECRET", "the client is told")
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), "handshake refused") }, 5*time.Second, 5*time.Millisecond)
	assert.Contains(t, logs.String(), `reason="no WebSocket endpoint at this path"`)
	assert.NotContains(t, logs.String(), "SECRET")
}

// refuseUpgrade serves upgrade, logging at level, and sends it an upgrade
// request for target with the extra header lines; it returns the log and
// the client's connection.
func refuseUpgrade(t *testing.T, level slog.Level, upgrade func(*Request) (Handler, error), target, header string) (*lockedBuffer, net.Conn) {
	t.Helper()
	logs := new(lockedBuffer)
	s, err := NewServer(Config{Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: level})), Upgrade: upgrade})
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Close() })
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	_, err = c.Write([]byte("GET " + target + " HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n" + header + "\r\n"))
	require.NoError(t, err)
	return logs, c
}
