package wsconn

import (
	"bytes"
	"strconv"

	"github.com/gobwas/httphead"
	"github.com/gobwas/ws"
)

// The server's side of the permessage-deflate negotiation (RFC 7692
// section 7.1). Offers are read from the request head here rather than
// through gobwas/ws's Negotiate hook, which allocates a slice of options
// per upgrade: at many thousands of handshakes that garbage, not the
// connections, sets the heap's size. The answer is one of a few response
// lines built once per server.

// deflateAnswer is the Sec-WebSocket-Extensions of an accepted offer: no
// context takeover either way, so that a connection keeps no window
// between messages. (RFC 7692 lets a server ask for
// client_no_context_takeover whether or not the offer has it.)
const deflateAnswer = "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover; client_no_context_takeover"

// deflateHeaders returns the response lines of an accepted offer, indexed
// by the server_max_window_bits to echo (0: none), boxed once so that
// answering allocates nothing.
func deflateHeaders() (h [16]ws.HandshakeHeader) {
	h[0] = ws.HandshakeHeaderBytes(deflateAnswer + "\r\n")
	for bits := 8; bits < len(h); bits++ {
		h[bits] = ws.HandshakeHeaderBytes(deflateAnswer + "; server_max_window_bits=" + strconv.Itoa(bits) + "\r\n")
	}
	return h
}

// acceptDeflate looks through the Sec-WebSocket-Extensions lines of head
// for the first well-formed permessage-deflate offer and reports whether
// there is one, with the server_max_window_bits it asks for (0: none),
// which accepting it requires echoing; the server sends nothing compressed
// that breaks it. A malformed offer (an unknown or repeated parameter, a
// window out of 8-15) is declined, not refused: the next may do, and
// without any the connection goes on uncompressed.
func acceptDeflate(head []byte) (serverBits uint8, ok bool) {
	for line := range headerLines(head) {
		name, value, found := bytes.Cut(line, []byte{':'})
		if !found || !bytes.EqualFold(bytes.TrimSpace(name), []byte("Sec-WebSocket-Extensions")) {
			continue
		}
		if serverBits, ok = scanDeflateOffers(value); ok {
			return serverBits, true
		}
	}
	return 0, false
}

// scanDeflateOffers is acceptDeflate for one header value, a list of
// offers.
func scanDeflateOffers(value []byte) (serverBits uint8, ok bool) {
	var cur deflateOffer
	index, accepted := -1, false
	wellFormed := httphead.ScanOptions(value, func(i int, option, attr, val []byte) httphead.Control {
		if i != index {
			if cur.acceptable() {
				accepted = true
				return httphead.ControlBreak
			}
			index = i
			cur = deflateOffer{deflate: bytes.EqualFold(option, []byte("permessage-deflate"))}
		}
		if attr != nil {
			cur.param(attr, val)
		}
		return httphead.ControlContinue
	})
	if accepted || wellFormed && cur.acceptable() {
		return cur.serverBits, true
	}
	return 0, false
}

// deflateOffer is what scanDeflateOffers learns of one offer.
type deflateOffer struct {
	deflate    bool  // the offer is permessage-deflate
	bad        bool  // a parameter is unknown, repeated or out of range
	seen       uint8 // parameters seen, one bit each
	serverBits uint8 // server_max_window_bits; 0: not given
}

func (o *deflateOffer) acceptable() bool { return o.deflate && !o.bad }

// param takes one parameter of the offer.
func (o *deflateOffer) param(attr, val []byte) {
	var bit uint8
	switch string(attr) {
	case "server_no_context_takeover":
		bit, o.bad = 1, o.bad || len(val) > 0
	case "client_no_context_takeover":
		bit, o.bad = 2, o.bad || len(val) > 0
	case "server_max_window_bits":
		bits, ok := windowBits(val)
		bit, o.bad, o.serverBits = 4, o.bad || !ok, bits
	case "client_max_window_bits":
		// Without a value: the client can take any; with one, the most it
		// will use. Either way the server inflates with a whole window.
		_, ok := windowBits(val)
		bit, o.bad = 8, o.bad || len(val) > 0 && !ok
	default:
		o.bad = true
	}
	o.bad = o.bad || o.seen&bit != 0
	o.seen |= bit
}

// windowBits parses a window size: a decimal 8 to 15, no leading zero.
func windowBits(val []byte) (uint8, bool) {
	switch {
	case len(val) == 1 && (val[0] == '8' || val[0] == '9'):
		return val[0] - '0', true
	case len(val) == 2 && val[0] == '1' && val[1] >= '0' && val[1] <= '5':
		return 10 + val[1] - '0', true
	}
	return 0, false
}
