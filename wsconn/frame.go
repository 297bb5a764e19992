package wsconn

import (
	"encoding/binary"
	"unicode/utf8"

	"github.com/gobwas/ws"
)

// Frame size limits from RFC 6455.
const (
	maxHeaderBytes         = 14  // 2 + 8 (64-bit length) + 4 (mask)
	maxServerHeaderBytes   = 10  // server frames are never masked
	maxControlPayloadBytes = 125 // section 5.5
)

// AppendFrameHeader appends the header of an unmasked server frame with
// opcode op, the FIN bit set when fin, and a payload of length bytes.
// Server frames are not masked, so the same header and payload bytes can be
// sent to any number of clients.
func AppendFrameHeader(dst []byte, op ws.OpCode, fin bool, length int) []byte {
	b0 := byte(op)
	if fin {
		b0 |= 0x80
	}
	switch {
	case length <= 125:
		return append(dst, b0, byte(length))
	case length <= 0xffff:
		return append(dst, b0, 126, byte(length>>8), byte(length))
	default:
		dst = append(dst, b0, 127)
		return binary.BigEndian.AppendUint64(dst, uint64(length))
	}
}

// AppendFrame appends a complete unmasked server frame carrying payload as a
// single final frame.
func AppendFrame(dst []byte, op ws.OpCode, payload []byte) []byte {
	dst = AppendFrameHeader(dst, op, true, len(payload))
	return append(dst, payload...)
}

// NewFrame returns a complete unmasked server frame carrying payload in a
// buffer of exactly the right size.
func NewFrame(op ws.OpCode, payload []byte) []byte {
	return AppendFrame(make([]byte, 0, maxServerHeaderBytes+len(payload)), op, payload)
}

// maxCloseReason is the longest reason a close frame carries: a control
// frame's payload is at most 125 bytes (RFC 6455 section 5.5), two of them
// the code.
const maxCloseReason = 123

// NewCloseFrame returns a close frame with code and reason. A zero code gives
// a close frame with an empty payload (no status code). A reason longer than
// 123 bytes is cut to fit, on a UTF-8 character boundary, so that the frame
// stays a valid control frame.
func NewCloseFrame(code ws.StatusCode, reason string) []byte {
	if code == 0 {
		return NewFrame(ws.OpClose, nil)
	}
	if len(reason) > maxCloseReason {
		n := maxCloseReason
		for n > 0 && !utf8.RuneStart(reason[n]) {
			n-- // reason[n] continues the character before it: cut before that one
		}
		reason = reason[:n]
	}
	p := make([]byte, 0, maxServerHeaderBytes+2+len(reason))
	p = AppendFrameHeader(p, ws.OpClose, true, 2+len(reason))
	p = binary.BigEndian.AppendUint16(p, uint16(code))
	return append(p, reason...)
}

// validCloseCode reports whether a peer may send code in a close frame
// (RFC 6455 section 7.4 and the IANA registry): 1000-1003, 1007-1014 and
// 3000-4999. 1004-1006 and 1015 are reserved, 1016-2999 unassigned, and
// everything below 1000 or from 5000 on is not defined.
func validCloseCode(code ws.StatusCode) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
