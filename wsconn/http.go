package wsconn

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strconv"
	"time"
)

// Plain HTTP requests, those that are not WebSocket upgrades, are served
// one at a time per connection. A handler runs on a goroutine of its own,
// never on a worker: a slow one (a 5 s profile, a publish waiting for a busy
// shard) must not hold up the connections the workers serve. At most
// Config.MaxHTTPHandlers run at once; past that a request gets 503.
//
// While its handler runs a connection is in stateHTTP: its fd is not armed
// and nothing more is read. The handler's goroutine queues the response and
// arms the fd for writability; the turn that the poller then schedules
// writes it like any queued frame. The goroutine never writes to the socket
// nor submits to the worker pool, so it waits on no worker.
//
// Keep-alive: unless the response closes the connection (see keepAlive),
// the connection goes back to stateHandshake, with Config.HTTPIdleTimeout
// to start its next request, which may be a WebSocket upgrade. Nothing of it
// is read until the response is written: a client that sends requests and
// reads no responses holds one response, not one per request. The requests
// served so far are counted in its handshake, which is all a kept-alive
// connection holds beyond a fresh one.

// readHTTP serves a plain HTTP request whose head is data[:headLen], once its
// body (Content-Length only) has arrived.
func (c *Conn) readHTTP(data []byte, headLen int) {
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data[:headLen])))
	if err != nil {
		c.respond(http.StatusBadRequest, "malformed request\n")
		return
	}
	switch {
	case len(req.TransferEncoding) > 0:
		c.respond(http.StatusLengthRequired, "chunked bodies are not accepted; send Content-Length\n")
		return
	case req.ContentLength > c.srv.cfg.MaxBodyBytes:
		c.respond(http.StatusRequestEntityTooLarge, "request body too large\n")
		return
	case req.Header.Get("Expect") != "" && !expectsContinue(req):
		c.respond(http.StatusExpectationFailed, "the only expectation met is 100-continue\n")
		return
	}
	need := headLen + int(max(req.ContentLength, 0))
	if len(data) < need {
		c.keepHandshake(data)
		c.hs.need, c.hs.req = need, req
		if expectsContinue(req) && req.ProtoAtLeast(1, 1) {
			// The client waits for this before it sends the body (curl
			// does for bodies over 1 MiB, for a second): the head passed
			// the limits, so the body is welcome (RFC 9110 10.1.1). The
			// turn's end writes it; nothing is read until it is written.
			c.mu.Lock()
			if c.state == stateHandshake {
				c.appendLocked(continueResponse)
			}
			c.mu.Unlock()
		}
		return
	}
	c.serveHTTP(req, data[headLen:need], len(data) > need)
}

// continueResponse is the interim response to a request that expects
// 100-continue. It is shared: write queues only read the frames they hold.
var continueResponse = []byte("HTTP/1.1 100 Continue\r\n\r\n")

// expectsContinue reports whether req asks for a 100 Continue before it
// sends its body.
func expectsContinue(req *http.Request) bool {
	return hasToken([]byte(req.Header.Get("Expect")), "100-continue")
}

// serveHTTP starts the HTTP handler for req, parsed from the head, whose
// body is body, on a goroutine of its own; runHTTP queues its response.
// more says whether bytes followed the request (pipelining): they are
// dropped, and the response closes the connection. body is not kept.
func (c *Conn) serveHTTP(req *http.Request, body []byte, more bool) {
	served := 0
	if c.hs != nil {
		served = c.hs.served
	}
	c.hs = nil
	if served > 0 {
		c.srv.httpReused.Add(1)
	}
	if c.srv.httpHandlers.Add(1) > int64(c.srv.cfg.MaxHTTPHandlers) {
		c.srv.httpHandlers.Add(-1)
		c.srv.httpBusy.Add(1)
		c.respond(http.StatusServiceUnavailable, "too many requests in progress; retry\n", "Retry-After", "1")
		return
	}
	// body is in the worker's read buffer or the handshake buffer; the
	// request's body reads from a copy of its own.
	req.Body = io.NopCloser(bytes.NewReader(bytes.Clone(body)))
	req.RemoteAddr = c.RemoteAddr().String()
	c.mu.Lock()
	if c.state != stateHandshake {
		c.mu.Unlock()
		c.srv.httpHandlers.Add(-1)
		return
	}
	c.state = stateHTTP
	// No handshake deadline while the handler runs: it is the server's
	// own code, not the client, that takes the time.
	c.deadline = 0
	c.mu.Unlock()
	go c.runHTTP(req, served+1, more)
}

// runHTTP runs the HTTP handler for req, the served'th request on the
// connection, and queues its response, unless the connection was released
// meanwhile (a Shutdown that ran out of time). The connection is kept alive
// for the next request or closed after the response (see keepAlive); more
// is serveHTTP's.
func (c *Conn) runHTTP(req *http.Request, served int, more bool) {
	defer c.srv.httpHandlers.Add(-1)
	w := c.srv.callHTTP(req)
	c.srv.httpRequests.Add(1)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state != stateHTTP {
		return
	}
	keep := !more && c.keepAlive(req, w, served)
	hint := "" // Connection: close
	if keep {
		// The Keep-Alive hint (RFC 2068 19.7.1.1), which clients such as
		// undici (Node's fetch) read: a client that drops an idle
		// connection before the server does never sends a request on a
		// connection that is being closed.
		// The timeout is rounded down, and left out under a second.
		hint = fmt.Sprintf("max=%d", c.srv.cfg.HTTPKeepAliveRequests-served)
		if secs := int(c.srv.cfg.HTTPIdleTimeout / time.Second); secs > 0 {
			hint = fmt.Sprintf("timeout=%d, %s", secs, hint)
		}
	}
	resp := w.bytes(req.Method == http.MethodHead, hint)
	if keep {
		// A handshake in flight again, with the idle timeout to begin the
		// next request; readHandshake gives it HandshakeTimeout once begun.
		c.state = stateHandshake
		c.deadline = c.srv.deadlineAfter(c.srv.cfg.HTTPIdleTimeout)
		c.hs = &handshake{served: served}
	} else {
		c.srv.handshakes.Add(-1)
		c.state = stateClosing
		c.deadline = c.srv.deadlineAfter(c.srv.cfg.CloseTimeout)
	}
	c.appendLocked(resp)
	// The turn the poller schedules writes the response.
	c.waitWritableLocked()
}

// keepAlive reports whether the connection may carry another request after
// answering req, the served'th, with w: not if the client or the handler
// asked for close, nor past Config.HTTPKeepAliveRequests, nor once the
// server shuts down (Shutdown closes connections in stateHTTP through their
// response). c.mu is held.
func (c *Conn) keepAlive(req *http.Request, w *responseBuffer, served int) bool {
	return !req.Close && !hasToken([]byte(w.header.Get("Connection")), "close") &&
		served < c.srv.cfg.HTTPKeepAliveRequests && !c.srv.closing.Load()
}

// callHTTP runs the HTTP handler for req and returns its response. A
// handler that panics gets 500 and a log line, as net/http does, rather
// than taking the server down.
func (s *Server) callHTTP(req *http.Request) (w *responseBuffer) {
	w = &responseBuffer{header: make(http.Header)}
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		if v != http.ErrAbortHandler {
			s.log.Error("wsconn: HTTP handler panicked", "method", req.Method, "path", req.URL.Path,
				"panic", v, "stack", string(debug.Stack()))
		}
		w = &responseBuffer{header: make(http.Header)}
		w.header.Set("Content-Type", "text/plain; charset=utf-8")
		w.WriteHeader(http.StatusInternalServerError)
		_, _ = w.Write([]byte("internal server error\n"))
	}()
	s.cfg.HTTP.ServeHTTP(w, req)
	return w
}

// respond sends a plain-text HTTP error response, with header fields given
// as name, value pairs, and closes the connection.
func (c *Conn) respond(status int, body string, header ...string) {
	c.hs = nil
	resp := plainResponse(status, body, header...)
	c.mu.Lock()
	c.closeLocked(resp)
	c.mu.Unlock()
}

// plainResponse returns a response of status with the text body and the
// header fields given as name, value pairs, which closes the connection.
func plainResponse(status int, body string, header ...string) []byte {
	w := &responseBuffer{header: make(http.Header)}
	w.header.Set("Content-Type", "text/plain; charset=utf-8")
	for i := 0; i+1 < len(header); i += 2 {
		w.header.Set(header[i], header[i+1])
	}
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
	return w.bytes(false, "")
}

// answerExpiredLocked answers, instead of dropping it, a plain HTTP request
// whose head was read and whose body had not all come when the connection
// expired: 503 if the server is shutting down, 408 if the request ran out
// of its time. The client then knows that the request was not served
// (a publish was not made), where a bare close left it unsure. It reports
// whether it answered; the caller holds c.mu, in a turn (hs is the turn's).
func (c *Conn) answerExpiredLocked() bool {
	if c.state != stateHandshake || c.hs == nil || c.hs.req == nil || c.out == writeBroken {
		return false
	}
	c.hs = nil
	c.set(flagExpired, false)
	c.srv.handshakeAborts.Add(1) // its request never came whole, as before
	resp := plainResponse(http.StatusRequestTimeout, "the request body did not arrive in time\n")
	if c.srv.closing.Load() {
		resp = plainResponse(http.StatusServiceUnavailable, "shutting down\n")
	}
	c.closeLocked(resp)
	return true
}

// responseBuffer is the http.ResponseWriter for plain HTTP requests: the
// whole response is built in memory and then queued like any frame.
type responseBuffer struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *responseBuffer) Header() http.Header { return w.header }

func (w *responseBuffer) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
}

func (w *responseBuffer) Write(p []byte) (int, error) {
	w.WriteHeader(http.StatusOK)
	return w.body.Write(p)
}

// bytes serializes the response, with Connection: close, or keep-alive and
// Keep-Alive: keepAlive when that is not empty. head leaves the body out (a
// HEAD request), not its Content-Length.
//
// Content-Length is the body's length, except where a response has no body:
// a 204 carries none (RFC 9110 8.6), a 304 and the answer to a HEAD keep
// the handler's, the length a GET would have had (http.ServeContent sets
// it and writes nothing for HEAD).
func (w *responseBuffer) bytes(head bool, keepAlive string) []byte {
	w.WriteHeader(http.StatusOK)
	switch {
	case w.status == http.StatusNoContent:
		w.body.Reset()
		w.header.Del("Content-Length")
	case w.status == http.StatusNotModified:
		w.body.Reset()
	case head && w.body.Len() == 0:
	default:
		if w.header.Get("Content-Type") == "" && w.body.Len() > 0 {
			w.header.Set("Content-Type", http.DetectContentType(w.body.Bytes()))
		}
		w.header.Set("Content-Length", strconv.Itoa(w.body.Len()))
	}
	w.header.Set("Connection", "close")
	if keepAlive != "" {
		w.header.Set("Connection", "keep-alive")
		w.header.Set("Keep-Alive", keepAlive)
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "HTTP/1.1 %d %s\r\n", w.status, http.StatusText(w.status))
	_ = w.header.Write(&out)
	out.WriteString("\r\n")
	if !head {
		out.Write(w.body.Bytes())
	}
	return out.Bytes()
}
