package wsconn

import (
	"bytes"
	"cmp"
	"errors"
	"io"
	"net/http"
	"net/netip"

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
	RemoteAddr    netip.AddrPort
}

// Reject returns an error for Config.Upgrade that rejects the upgrade with
// the HTTP status code and reason.
func Reject(status int, reason string) error {
	return ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(reason))
}

// RejectHeader is Reject with header fields for the response, such as the
// WWW-Authenticate of a 401.
func RejectHeader(status int, reason string, header http.Header) error {
	return ws.RejectConnectionError(ws.RejectionStatus(status), ws.RejectionReason(reason),
		ws.RejectionHeader(ws.HandshakeHeaderHTTP(header)))
}

// RejectRedacted is RejectHeader (header may be nil) for a reason that
// carries what the request sent, such as its path or a topic of its query:
// the client gets reason, the server's logs of refused handshakes get logged
// instead, for they never give what a request carried (a token may be
// anywhere in it).
func RejectRedacted(status int, reason, logged string, header http.Header) error {
	return &redacted{err: RejectHeader(status, reason, header), logged: logged}
}

// redacted is a rejection whose reason is not to be logged; the upgrader
// hands gobwas/ws the rejection inside and keeps logged for the logs.
type redacted struct {
	err    error
	logged string
}

func (r *redacted) Error() string { return r.logged }
func (r *redacted) Unwrap() error { return r.err }

var crlfcrlf = []byte("\r\n\r\n")

// readHandshake collects the request bytes in p and, once the request is
// complete, upgrades the connection or serves the plain HTTP request.
func (c *Conn) readHandshake(p []byte) {
	maxHeader := c.srv.cfg.MaxHeaderBytes
	data := p
	switch {
	case c.hs != nil && len(c.hs.buf) > 0:
		c.hs.buf = append(c.hs.buf, p...)
		data = c.hs.buf
		if need := c.hs.need; need > 0 {
			// Head already parsed; waiting for the request body.
			if len(data) >= need {
				req := c.hs.req
				c.serveHTTP(req, data[need-int(req.ContentLength):need], len(data) > need)
			}
			return
		}
	case c.hs != nil:
		// The next request on a kept-alive connection has begun: from now
		// on it has HandshakeTimeout, as a new connection has, not the
		// idle timeout.
		c.mu.Lock()
		if c.state == stateHandshake {
			c.deadline = c.srv.deadlineAfter(c.srv.cfg.HandshakeTimeout)
		}
		c.mu.Unlock()
	}
	end := bytes.Index(data, crlfcrlf)
	if end < 0 {
		if bytes.Contains(data, []byte("\n\n")) {
			// A head whose lines end in bare LF: it will never end in
			// CRLF CRLF, and the client must hear why.
			c.srv.countStatus(http.StatusBadRequest, "request lines end in bare LF")
			c.respond(http.StatusBadRequest, "request lines must end in CRLF\n")
			return
		}
		if len(data) >= maxHeader {
			c.srv.countStatus(http.StatusRequestHeaderFieldsTooLarge, "request head over the limit")
			c.respond(http.StatusRequestHeaderFieldsTooLarge, "request header too large\n")
			return
		}
		c.keepHandshake(data)
		return
	}
	head, rest := data[:end+4], data[end+4:]
	if len(head) > maxHeader {
		c.srv.countStatus(http.StatusRequestHeaderFieldsTooLarge, "request head over the limit")
		c.respond(http.StatusRequestHeaderFieldsTooLarge, "request header too large\n")
		return
	}
	if !wantsWebSocket(head) {
		c.readHTTP(data, len(head))
		return
	}
	up := c.srv.runUpgrade(c, head)
	defer c.srv.putUpgrader(up)
	handler, resp, err := up.result()
	if err != nil {
		resp = bytes.Clone(resp)
		reason := cmp.Or(up.logged, err.Error())
		c.srv.handshakeErrors.Add(1)
		c.srv.countStatus(statusOf(resp), reason)
		c.srv.log.Debug("wsconn: upgrade rejected", "remote", c.RemoteAddr(), "reason", reason)
		c.mu.Lock()
		c.closeLocked(resp)
		c.mu.Unlock()
		return
	}
	c.mu.Lock()
	c.hs = nil
	if c.state != stateHandshake {
		c.mu.Unlock()
		return
	}
	c.state = stateOpen
	c.srv.handshakes.Add(-1)
	c.srv.upgrades.Add(1)
	c.srv.websockets.Add(1)
	c.deadline = 0
	c.lastSeen = c.srv.ticks()
	c.handler = handler
	if l, ok := handler.(MessageLimiter); ok {
		c.rd.lowerLimit(l.MaxMessageBytes())
	}
	if up.deflate {
		c.rd.SetCompression(true)
		// The compressor's window is 32 KiB: a client that asked for less
		// gets plain frames.
		c.deflate = up.deflateBits == 0 || up.deflateBits == 15
		c.srv.compressedUpgrades.Add(1)
	}
	// The response waits for what OnOpen sends with SendOnOpen: one
	// write for both.
	c.out = writeOpening
	up.opening = handshake{resp: &up.out, upgrade: &up.req}
	c.hs = &up.opening
	c.mu.Unlock()
	handler.OnOpen(c)
	c.mu.Lock()
	c.openedLocked(up.out.Bytes())
	c.mu.Unlock()
	if len(rest) > 0 {
		// The client did not wait for the response: frames follow.
		c.readFrames(rest, false)
	}
}

// keepHandshake stores the request bytes read so far on the connection,
// unless they are stored already (data is then c.hs.buf).
func (c *Conn) keepHandshake(data []byte) {
	if c.hs == nil {
		c.hs = &handshake{}
	}
	if len(c.hs.buf) == 0 {
		c.hs.buf = append(make([]byte, 0, max(len(data), 512)), data...)
	}
}

// wantsWebSocket reports whether the request head asks for a WebSocket
// upgrade (an Upgrade header whose list names websocket). Such a request
// gets the Upgrader's answer, an error status included; any other request
// is plain HTTP.
func wantsWebSocket(head []byte) bool {
	_, fields, _ := bytes.Cut(head, []byte("\r\n")) // past the request line, which may be empty
	for line := range headerLines(fields) {
		key, value, ok := bytes.Cut(line, []byte{':'})
		if ok && bytes.EqualFold(bytes.TrimSpace(key), []byte("Upgrade")) && hasToken(value, "websocket") {
			return true
		}
	}
	return false
}

// upgrade runs the gobwas/ws Upgrader over the head of a WebSocket upgrade
// request. resp is the response to send: the 101, or the error status when
// err is not nil.
func (s *Server) upgrade(c *Conn, head []byte) (h Handler, resp []byte, err error) {
	up := s.runUpgrade(c, head)
	defer s.putUpgrader(up)
	h, resp, err = up.result()
	return h, bytes.Clone(resp), err
}

// runUpgrade is upgrade with the result left in a pooled upgrader, whose
// response bytes the caller may write without copying; the caller puts the
// upgrader back in s.upgraders.
func (s *Server) runUpgrade(c *Conn, head []byte) *upgrader {
	up, _ := s.upgraders.Get().(*upgrader)
	if up == nil {
		up = s.newUpgrader()
	}
	up.run(c, head)
	return up
}

// maxPooledResponse caps the response buffer an upgrader keeps in the pool:
// SendOnOpen may have grown it with many replies (up to the handler's own
// limits), and a pooled upgrader would hold that for good.
const maxPooledResponse = 16 << 10

// putUpgrader puts up back in s.upgraders, without a response buffer grown
// past maxPooledResponse.
func (s *Server) putUpgrader(up *upgrader) {
	if up.out.Cap() > maxPooledResponse {
		up.out = bytes.Buffer{}
	}
	s.upgraders.Put(up)
}

// run does one handshake of c with the request head, leaving the result
// in up.
func (up *upgrader) run(c *Conn, head []byte) {
	s := up.srv
	up.req = Request{RemoteAddr: c.RemoteAddr()}
	up.handler = nil
	up.logged = ""
	up.deflate, up.deflateBits = false, 0
	up.out.Reset()
	head, err := normalizeHead(head)
	if err != nil {
		up.err = Reject(http.StatusBadRequest, err.Error())
		return
	}
	if !s.cfg.DisableCompression {
		up.deflateBits, up.deflate = acceptDeflate(head)
	}
	up.in.Reset(head)
	up.u.ReadBufferSize = len(head)
	_, up.err = up.u.Upgrade(&up.io)
}

// badRequest answers an upgrade request whose request line the Upgrader
// cannot parse: it writes nothing then, but the client still gets a status
// (RFC 6455 section 4.2.1).
var badRequest = []byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

// result returns the upgrade's handler, response and error. The response
// is valid until up goes back to the pool.
func (up *upgrader) result() (Handler, []byte, error) {
	if up.err != nil && up.out.Len() == 0 {
		return nil, badRequest, up.err
	}
	h := up.handler
	up.handler = nil
	return h, up.out.Bytes(), up.err
}

// upgrader is the reusable state of one handshake: the gobwas/ws Upgrader
// with its hooks bound once, and its I/O buffers. Upgrades take one from a
// pool, so a handshake leaves next to no garbage behind; at many thousands of
// handshakes that garbage, not the connections, would set the heap's size.
type upgrader struct {
	srv         *Server
	u           ws.Upgrader
	req         Request
	handler     Handler
	deflate     bool  // permessage-deflate accepted
	deflateBits uint8 // the server_max_window_bits to echo; 0: none
	err         error
	// logged is what the logs say of err, a rejection by Config.Upgrade
	// whose reason carries what the request sent; "": err's own text.
	logged string
	in     bytes.Reader
	out    bytes.Buffer
	io     handshakeIO
	// opening is the connection's handshake while OnOpen runs: it lets
	// SendOnOpen add to out, the response.
	opening handshake
}

func (s *Server) newUpgrader() *upgrader {
	up := &upgrader{srv: s}
	up.io = handshakeIO{Reader: &up.in, Writer: &up.out}
	up.u = ws.Upgrader{
		OnRequest:       up.onRequest,
		OnHost:          up.onHost,
		OnHeader:        up.onHeader,
		OnBeforeUpgrade: up.onBeforeUpgrade,
	}
	return up
}

func (up *upgrader) onRequest(uri []byte) error {
	path, query, _ := bytes.Cut(uri, []byte{'?'})
	up.req.Path, up.req.RawQuery = string(path), string(query)
	return nil
}

func (up *upgrader) onHost(host []byte) error {
	up.req.Host = string(host)
	return nil
}

func (up *upgrader) onHeader(key, value []byte) error {
	switch {
	case bytes.EqualFold(key, []byte("Origin")):
		up.req.Origin = string(value)
	case bytes.EqualFold(key, []byte("Authorization")):
		up.req.Authorization = string(value)
	}
	return nil
}

func (up *upgrader) onBeforeUpgrade() (ws.HandshakeHeader, error) {
	h, err := up.srv.cfg.Upgrade(&up.req)
	if err == nil && h == nil {
		err = Reject(http.StatusNotFound, "not found")
	}
	var r *redacted
	if errors.As(err, &r) {
		// gobwas/ws takes its own rejection, not a wrapper.
		up.logged, err = r.logged, r.err
	}
	up.handler = h
	if err == nil && up.deflate {
		return up.srv.deflateHeaders[up.deflateBits], nil
	}
	return nil, err
}

// handshakeIO gives the Upgrader the request bytes and collects its response.
type handshakeIO struct {
	io.Reader
	io.Writer
}
