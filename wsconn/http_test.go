package wsconn_test

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/wsconn"
)

// slowHTTP is an HTTP handler whose /slow requests wait until release is
// closed; /panic panics, and anything else answers at once.
type slowHTTP struct {
	entered atomic.Int32
	release chan struct{}
	once    sync.Once
}

// startSlowHTTP serves cfg with a slowHTTP as its HTTP handler. The
// handlers are released when the test ends, before the server's Shutdown
// (cleanups run last-registered first): a failed test does not leave them
// running.
func startSlowHTTP(t *testing.T, cfg wsconn.Config) (*slowHTTP, *wsconn.Server, string) {
	t.Helper()
	h := &slowHTTP{release: make(chan struct{})}
	cfg.HTTP = h
	srv, addr := startServer(t, cfg)
	t.Cleanup(h.done)
	return h, srv, addr
}

// getSlow starts n GET /slow to addr and waits until their handlers all run.
func (h *slowHTTP) getSlow(t *testing.T, addr string, n int) []<-chan string {
	t.Helper()
	var out []<-chan string
	for range n {
		out = append(out, getAsync("http://"+addr+"/slow"))
	}
	require.Eventually(t, func() bool { return h.entered.Load() == int32(n) }, 3*time.Second, time.Millisecond,
		"%d slow handlers run at once", n)
	return out
}

func (h *slowHTTP) done() { h.once.Do(func() { close(h.release) }) }

func (h *slowHTTP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/slow":
		h.entered.Add(1)
		<-h.release
		_, _ = io.WriteString(w, "slow done\n")
	case "/panic":
		panic("handler bug")
	default:
		_, _ = io.WriteString(w, "ok\n")
	}
}

// getAsync GETs url on a goroutine and sends the outcome: the status and
// body, or the error.
func getAsync(url string) <-chan string {
	out := make(chan string, 1)
	go func() {
		c := &http.Client{Timeout: 3 * rawTimeout}
		resp, err := c.Get(url)
		if err != nil {
			out <- "error: " + err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out <- resp.Status + " " + string(b)
	}()
	return out
}

// TestHTTPOffWorkers: four slow HTTP requests on a server with two workers
// all run at once, and a WebSocket upgrade beside them is served at once:
// plain HTTP never occupies a worker.
func TestHTTPOffWorkers(t *testing.T) {
	h, srv, addr := startSlowHTTP(t, wsconn.Config{Workers: 2})
	slow := h.getSlow(t, addr, 4) // four at once on two workers
	assert.Equal(t, int64(4), srv.Stats().HTTPHandlers)

	// The upgrade must not wait for the handlers: its own deadline, far
	// below the time they take.
	done := make(chan error, 1)
	go func() {
		c, _, err := dialGorilla(addr, "")
		if err == nil {
			_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
			if err = c.WriteMessage(1, []byte("beside")); err == nil {
				_, _, err = c.ReadMessage()
			}
			_ = c.Close()
		}
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err, "WebSocket echo beside slow HTTP requests")
	case <-time.After(2 * time.Second):
		t.Fatal("WebSocket upgrade waited for slow HTTP handlers")
	}
	// A quick request is not held up either.
	select {
	case got := <-getAsync("http://" + addr + "/quick"):
		assert.Equal(t, "200 OK ok\n", got)
	case <-time.After(2 * time.Second):
		t.Fatal("HTTP request waited for slow HTTP handlers")
	}

	h.done()
	for _, ch := range slow {
		assert.Equal(t, "200 OK slow done\n", <-ch)
	}
	require.Eventually(t, func() bool { return srv.Stats().HTTPHandlers == 0 }, rawTimeout, time.Millisecond)
	assert.Equal(t, uint64(5), srv.Stats().HTTPRequests)
}

// TestShutdownHonoursContext: with handlers that never finish, Shutdown
// returns its context's error once the context ends, not when they do.
func TestShutdownHonoursContext(t *testing.T) {
	h, srv, addr := startSlowHTTP(t, wsconn.Config{Workers: 2})
	slow := h.getSlow(t, addr, 2)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(ctx) }()
	select {
	case err := <-shut:
		assert.ErrorIs(t, err, context.DeadlineExceeded)
	case <-time.After(3 * time.Second):
		t.Fatal("Shutdown with a 300 ms context did not return within 3 s")
	}
	assert.Zero(t, srv.Connections())
	h.done()
	for _, ch := range slow {
		assert.Contains(t, <-ch, "error", "a request cut by Shutdown gets no response")
	}
}

// TestHTTPHandlerLimit: past MaxHTTPHandlers a request gets 503 with
// Retry-After at once, and is counted.
func TestHTTPHandlerLimit(t *testing.T) {
	h, srv, addr := startSlowHTTP(t, wsconn.Config{MaxHTTPHandlers: 2})
	slow := h.getSlow(t, addr, 2)

	resp, err := (&http.Client{Timeout: rawTimeout}).Get("http://" + addr + "/quick")
	require.NoError(t, err)
	_ = resp.Body.Close()
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Equal(t, uint64(1), srv.Stats().HTTPBusy)

	h.done()
	for _, ch := range slow {
		assert.Equal(t, "200 OK slow done\n", <-ch)
	}
	require.Eventually(t, func() bool { return srv.Stats().HTTPHandlers == 0 }, rawTimeout, time.Millisecond)
	assert.Equal(t, "200 OK ok\n", <-getAsync("http://"+addr+"/quick"), "room again")
}

// TestHTTPHandlerPanic: a handler that panics gets 500, and the server
// goes on serving.
func TestHTTPHandlerPanic(t *testing.T) {
	_, _, addr := startSlowHTTP(t, wsconn.Config{Logger: slog.New(slog.DiscardHandler)})
	assert.Equal(t, "500 Internal Server Error internal server error\n", <-getAsync("http://"+addr+"/panic"))
	assert.Equal(t, "200 OK ok\n", <-getAsync("http://"+addr+"/quick"))
	requireServed(t, addr)
}

// TestHTTPBodyArrivesLater: a request whose body comes in reads after its
// head is served with the whole body and the head's fields, the head parsed
// once.
func TestHTTPBodyArrivesLater(t *testing.T) {
	got := make(chan string, 1)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo-body", func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			got <- "error: " + err.Error()
			return
		}
		got <- r.URL.Query().Get("q") + " " + r.Header.Get("X-Test") + " " + string(b)
		_, _ = io.WriteString(w, "ok\n")
	})
	_, addr := startServer(t, wsconn.Config{HTTP: mux})
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, "POST /echo-body?q=query HTTP/1.1\r\nHost: x\r\nX-Test: header\r\nContent-Length: 10\r\n\r\nhello")
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // the head is read and parsed alone
	_, err = io.WriteString(c, "world")
	require.NoError(t, err)
	select {
	case s := <-got:
		assert.Equal(t, "query header helloworld", s)
	case <-time.After(5 * time.Second):
		t.Fatal("the handler never ran")
	}
	require.NoError(t, c.SetReadDeadline(time.Now().Add(5*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

// TestHTTPExpectContinue: a request that expects 100-continue gets it as
// soon as its head passes the limits, and then its response; Go's client,
// told to wait a minute for the 100, does not wait (it waited for good:
// nothing answered it, and curl waits a second for every body over 1 MiB).
// Any other expectation gets 417.
func TestHTTPExpectContinue(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /echo-body", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	})
	_, addr := startServer(t, wsconn.Config{HTTP: mux})

	t.Run("raw", func(t *testing.T) {
		conn, br := rawHTTP(t, addr)
		_, err := io.WriteString(conn, "POST /echo-body HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nExpect: 100-continue\r\n\r\n")
		require.NoError(t, err)
		line, err := br.ReadString('\n')
		require.NoError(t, err, "the 100 comes before the body is sent")
		assert.Equal(t, "HTTP/1.1 100 Continue\r\n", line)
		line, err = br.ReadString('\n')
		require.NoError(t, err)
		assert.Equal(t, "\r\n", line)
		_, err = io.WriteString(conn, "payload")
		require.NoError(t, err)
		resp, body := readResponse(t, br)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "payload", body)

		// The next request on the connection, with its body sent at once,
		// gets no 100: only its response.
		_, err = io.WriteString(conn, "POST /echo-body HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\nmore")
		require.NoError(t, err)
		resp, body = readResponse(t, br)
		assert.Equal(t, http.StatusOK, resp.StatusCode)
		assert.Equal(t, "more", body)
	})

	t.Run("go client", func(t *testing.T) {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{ExpectContinueTimeout: time.Minute}}
		defer c.CloseIdleConnections()
		req, err := http.NewRequest(http.MethodPost, "http://"+addr+"/echo-body", strings.NewReader("hello"))
		require.NoError(t, err)
		req.Header.Set("Expect", "100-continue")
		resp, err := c.Do(req)
		require.NoError(t, err, "the client waited for a 100 that never came")
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		assert.Equal(t, "hello", string(b))
	})

	t.Run("other expectation", func(t *testing.T) {
		conn, br := rawHTTP(t, addr)
		_, err := io.WriteString(conn, "POST /echo-body HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\nExpect: something-else\r\n\r\n")
		require.NoError(t, err)
		resp, _ := readResponse(t, br)
		assert.Equal(t, http.StatusExpectationFailed, resp.StatusCode)
	})
}

// TestHTTPHeadContentLength: the answer to HEAD carries the Content-Length
// the handler set, the length a GET gets (it said 0: the length of the
// body HEAD leaves out), and a 204 carries none (RFC 9110 8.6).
func TestHTTPHeadContentLength(t *testing.T) {
	content := bytes.Repeat([]byte("x"), 1000)
	mux := http.NewServeMux()
	mux.HandleFunc("/file.js", func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "file.js", time.Time{}, bytes.NewReader(content))
	})
	mux.HandleFunc("/nothing", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	})
	_, addr := startServer(t, wsconn.Config{HTTP: mux})

	conn, br := rawHTTP(t, addr)
	_, err := io.WriteString(conn, "GET /file.js HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	resp, body := readResponse(t, br)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Len(t, body, 1000)

	_, err = io.WriteString(conn, "HEAD /file.js HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	head, err := http.ReadResponse(br, &http.Request{Method: http.MethodHead})
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, head.StatusCode)
	assert.Equal(t, "1000", head.Header.Get("Content-Length"), "HEAD's Content-Length is GET's")
	assert.Equal(t, "text/javascript; charset=utf-8", head.Header.Get("Content-Type"))

	// No body followed the HEAD's head: the next response is read whole.
	_, err = io.WriteString(conn, "GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	resp, body = readResponse(t, br)
	assert.Equal(t, http.StatusNoContent, resp.StatusCode)
	assert.Empty(t, body)
	_, ok := resp.Header["Content-Length"]
	assert.False(t, ok, "a 204 carries no Content-Length")
}

// TestHTTPBodyNeverComes: a plain request whose head came and whose body
// did not all come is answered when it runs out of time (408) or the server
// shuts down (503), then closed: the client knows it was not served. It was
// closed without a word, and a publisher could not tell whether its message
// was taken.
func TestHTTPBodyNeverComes(t *testing.T) {
	const partial = "POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nhalf!"
	t.Run("timeout", func(t *testing.T) {
		srv, addr := startServer(t, wsconn.Config{HandshakeTimeout: 300 * time.Millisecond})
		conn, br := rawHTTP(t, addr)
		_, err := io.WriteString(conn, partial)
		require.NoError(t, err)
		resp, _ := readResponse(t, br)
		assert.Equal(t, http.StatusRequestTimeout, resp.StatusCode)
		assert.True(t, resp.Close, "Connection: close")
		_, err = br.ReadByte()
		assert.ErrorIs(t, err, io.EOF, "then closed")
		assert.Equal(t, uint64(1), srv.Stats().HandshakeAborts, "counted as the request that never came whole")
	})
	t.Run("shutdown", func(t *testing.T) {
		srv, addr := startServer(t, wsconn.Config{HandshakeTimeout: time.Minute})
		conn, br := rawHTTP(t, addr)
		_, err := io.WriteString(conn, partial)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return srv.Stats().BytesIn >= uint64(len(partial)) }, 5*time.Second, time.Millisecond)
		shut := make(chan error, 1)
		go func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			shut <- srv.Shutdown(ctx)
		}()
		resp, body := readResponse(t, br)
		assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, body)
		assert.True(t, resp.Close, "Connection: close")
		_ = conn.Close()
		require.NoError(t, <-shut)
	})
}
