package wsconn

import (
	"bytes"
	"errors"
)

// errDuplicateKey refuses a request with more than one Sec-WebSocket-Key:
// which one the accept answers is anybody's guess.
var errDuplicateKey = errors.New("more than one Sec-WebSocket-Key")

// normalizeHead prepares a WebSocket upgrade request head for the gobwas/ws
// Upgrader, which checks each header line on its own and wants Upgrade to
// be exactly "websocket". HTTP lets a header be a comma list, and a list be
// split over several lines (RFC 7230 3.2.2), as proxies send them:
//
//   - Connection lines, one of which lists the "upgrade" token, become one
//     "Connection: Upgrade" ("Connection: keep-alive" and then
//     "Connection: Upgrade" was refused);
//   - an Upgrade list that names websocket becomes "Upgrade: websocket"
//     ("Upgrade: h2c, websocket" was refused);
//   - a second Sec-WebSocket-Key is an error (the last one was used).
//
// head ends with the blank line. It is returned as it is, with no copy,
// unless something needs rewriting.
func normalizeHead(head []byte) ([]byte, error) {
	var connLines, keys int
	connUpgrade, rewrite := false, false
	for line := range headerLines(head) {
		name, value, ok := bytes.Cut(line, []byte{':'})
		if !ok {
			continue
		}
		name = bytes.TrimSpace(name)
		switch {
		case bytes.EqualFold(name, []byte("Connection")):
			connLines++
			connUpgrade = connUpgrade || hasToken(value, "upgrade")
		case bytes.EqualFold(name, []byte("Upgrade")):
			v := bytes.TrimSpace(value)
			rewrite = rewrite || !bytes.EqualFold(v, []byte("websocket")) && hasToken(v, "websocket")
		case bytes.EqualFold(name, []byte("Sec-WebSocket-Key")):
			keys++
		}
	}
	if keys > 1 {
		return nil, errDuplicateKey
	}
	if !rewrite && (connLines <= 1 || !connUpgrade) {
		return head, nil
	}
	out := make([]byte, 0, len(head))
	wroteConn := false
	first := true
	for line := range headerLines(head) {
		name, value, ok := bytes.Cut(line, []byte{':'})
		switch {
		case first || !ok:
			out = append(out, line...)
		case bytes.EqualFold(bytes.TrimSpace(name), []byte("Connection")) && connUpgrade:
			if wroteConn {
				continue
			}
			wroteConn = true
			out = append(out, "Connection: Upgrade"...)
		case bytes.EqualFold(bytes.TrimSpace(name), []byte("Upgrade")) && hasToken(value, "websocket"):
			out = append(out, "Upgrade: websocket"...)
		default:
			out = append(out, line...)
		}
		first = false
		out = append(out, "\r\n"...)
	}
	return append(out, "\r\n"...), nil
}

// headerLines yields the lines of head, the request line first, without
// their CRLF, up to the blank line that ends it.
func headerLines(head []byte) func(yield func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for rest := head; len(rest) > 0; {
			line, after, ok := bytes.Cut(rest, []byte("\r\n"))
			if !ok || len(line) == 0 {
				return
			}
			if !yield(line) {
				return
			}
			rest = after
		}
	}
}

// hasToken reports whether the comma list v names token, ignoring case and
// optional whitespace.
func hasToken(v []byte, token string) bool {
	for rest := v; ; {
		item, after, more := bytes.Cut(rest, []byte{','})
		if bytes.EqualFold(bytes.TrimSpace(item), []byte(token)) {
			return true
		}
		if !more {
			return false
		}
		rest = after
	}
}
