package wsconn

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/gobwas/ws"
)

// Request is what a Server learns of a WebSocket upgrade request before it
// accepts it: enough to route, authenticate and check the origin, and no more,
// so that nothing of the request stays behind on the connection.
type Request struct {
	Path          string // the path of the request URI, not unescaped
	RawQuery      string // the query of the request URI, without '?'
	Host          string
	Origin        string
	Authorization string
	RemoteAddr    string
}

// Reject returns an error for Config.Upgrade that rejects the upgrade with
// the HTTP status code and reason.
func Reject(status int, reason string) error {
	return ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(reason))
}

var crlfcrlf = []byte("\r\n\r\n")

// readHandshake collects the request bytes in p and, once the request is
// complete, upgrades the connection or serves the plain HTTP request.
func (c *Conn) readHandshake(p []byte) {
	maxHeader := c.srv.cfg.MaxHeaderBytes
	data := p
	if c.hs != nil {
		c.hs = append(c.hs, p...)
		data = c.hs
	}
	if c.hsNeed > 0 {
		// Header already parsed; waiting for a request body.
		if len(data) < c.hsNeed {
			c.keepHandshake(data)
			return
		}
		c.serveHTTP(data[:c.hsNeed])
		return
	}
	end := bytes.Index(data, crlfcrlf)
	if end < 0 {
		if len(data) >= maxHeader {
			c.respond(http.StatusRequestHeaderFieldsTooLarge, "request header too large\n")
			return
		}
		c.keepHandshake(data)
		return
	}
	head, rest := data[:end+4], data[end+4:]
	if len(head) > maxHeader {
		c.respond(http.StatusRequestHeaderFieldsTooLarge, "request header too large\n")
		return
	}
	handler, resp, isWS, err := c.srv.upgrade(c, head)
	if !isWS {
		c.readHTTP(data, len(head))
		return
	}
	if err != nil {
		c.srv.handshakeErrors.Add(1)
		c.srv.log.Debug("wsconn: upgrade rejected", "remote", c.remote, "err", err)
		c.mu.Lock()
		c.closeLocked(resp)
		c.mu.Unlock()
		return
	}
	c.hs = nil
	c.mu.Lock()
	if c.state != stateHandshake {
		c.mu.Unlock()
		return
	}
	c.state = stateOpen
	c.srv.handshakes.Add(-1)
	c.srv.upgrades.Add(1)
	c.deadline = 0
	c.handler = handler
	c.enqueueLocked(resp)
	c.mu.Unlock()
	handler.OnOpen(c)
	if len(rest) > 0 {
		// The client did not wait for the response: frames follow.
		c.readFrames(rest)
	}
}

// keepHandshake stores the request bytes read so far on the connection.
func (c *Conn) keepHandshake(data []byte) {
	if c.hs == nil {
		c.hs = append(make([]byte, 0, max(len(data), 512)), data...)
	}
}

// upgrade runs the gobwas/ws Upgrader over the request head. isWS is false
// for a request that is not a WebSocket upgrade at all (another method, or
// no Upgrade header): it is plain HTTP. Otherwise resp holds the response to
// send, the 101 or an error status.
func (s *Server) upgrade(c *Conn, head []byte) (h Handler, resp []byte, isWS bool, err error) {
	var req Request
	req.RemoteAddr = c.remote.String()
	sawUpgrade := false
	u := ws.Upgrader{
		ReadBufferSize: len(head),
		OnRequest: func(uri []byte) error {
			path, query, _ := strings.Cut(string(uri), "?")
			req.Path, req.RawQuery = path, query
			return nil
		},
		OnHost: func(host []byte) error {
			req.Host = string(host)
			return nil
		},
		OnHeader: func(key, value []byte) error {
			switch {
			case bytes.EqualFold(key, []byte("Upgrade")):
				sawUpgrade = true
			case bytes.EqualFold(key, []byte("Origin")):
				req.Origin = string(value)
			case bytes.EqualFold(key, []byte("Authorization")):
				req.Authorization = string(value)
			}
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			var err error
			h, err = s.cfg.Upgrade(&req)
			if err == nil && h == nil {
				err = Reject(http.StatusNotFound, "not found")
			}
			return nil, err
		},
	}
	var out bytes.Buffer
	_, err = u.Upgrade(handshakeIO{Reader: bytes.NewReader(head), Writer: &out})
	if err != nil && (errors.Is(err, ws.ErrHandshakeBadMethod) || errors.Is(err, ws.ErrHandshakeBadProtocol) || !sawUpgrade) {
		return nil, nil, false, err
	}
	return h, out.Bytes(), true, err
}

// handshakeIO gives the Upgrader the request bytes and collects its response.
type handshakeIO struct {
	io.Reader
	io.Writer
}

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
	}
	need := headLen + int(max(req.ContentLength, 0))
	if len(data) < need {
		c.hsNeed = need
		c.keepHandshake(data)
		return
	}
	c.serveHTTP(data[:need])
}

// serveHTTP runs the HTTP handler for the complete request in data and sends
// its response, then closes the connection (no keep-alive).
func (c *Conn) serveHTTP(data []byte) {
	c.hs, c.hsNeed = nil, 0
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(data)))
	if err != nil {
		c.respond(http.StatusBadRequest, "malformed request\n")
		return
	}
	req.RemoteAddr = c.remote.String()
	w := &responseBuffer{header: make(http.Header)}
	c.srv.cfg.HTTP.ServeHTTP(w, req)
	c.srv.httpRequests.Add(1)
	c.mu.Lock()
	c.closeLocked(w.bytes(req.Method == http.MethodHead))
	c.mu.Unlock()
}

// respond sends a plain-text HTTP error response and closes the connection.
func (c *Conn) respond(status int, body string) {
	c.hs, c.hsNeed = nil, 0
	w := &responseBuffer{header: make(http.Header)}
	w.header.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
	c.mu.Lock()
	c.closeLocked(w.bytes(false))
	c.mu.Unlock()
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

// bytes serializes the response with Connection: close.
func (w *responseBuffer) bytes(head bool) []byte {
	w.WriteHeader(http.StatusOK)
	if w.header.Get("Content-Type") == "" && w.body.Len() > 0 {
		w.header.Set("Content-Type", http.DetectContentType(w.body.Bytes()))
	}
	w.header.Set("Content-Length", strconv.Itoa(w.body.Len()))
	w.header.Set("Connection", "close")
	var out bytes.Buffer
	fmt.Fprintf(&out, "HTTP/1.1 %d %s\r\n", w.status, http.StatusText(w.status))
	_ = w.header.Write(&out)
	out.WriteString("\r\n")
	if !head {
		out.Write(w.body.Bytes())
	}
	return out.Bytes()
}
