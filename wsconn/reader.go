package wsconn

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/gobwas/ws"
)

// CloseError is a violation of RFC 6455 (or of a configured limit) by the
// peer: the connection must be failed with a close frame carrying Code.
type CloseError struct {
	Code   ws.StatusCode
	Reason string
}

func (e *CloseError) Error() string {
	return fmt.Sprintf("websocket: %s (close %d)", e.Reason, e.Code)
}

// The reader's errors. They are values, so failing allocates nothing.
var (
	errUnmasked         = &CloseError{ws.StatusProtocolError, "client frame not masked"}
	errReservedBits     = &CloseError{ws.StatusProtocolError, "reserved bits set without an extension"}
	errCompressedBit    = &CloseError{ws.StatusProtocolError, "compression bit on a control frame or a continuation"}
	errReservedOpCode   = &CloseError{ws.StatusProtocolError, "reserved opcode"}
	errControlTooLong   = &CloseError{ws.StatusProtocolError, "control frame payload over 125 bytes"}
	errControlFragment  = &CloseError{ws.StatusProtocolError, "fragmented control frame"}
	errNoContinuation   = &CloseError{ws.StatusProtocolError, "continuation frame without a message to continue"}
	errNotContinuation  = &CloseError{ws.StatusProtocolError, "new data frame inside a fragmented message"}
	errLengthMSB        = &CloseError{ws.StatusProtocolError, "64-bit payload length with the most significant bit set"}
	errCloseOneByte     = &CloseError{ws.StatusProtocolError, "close frame with a 1-byte payload"}
	errCloseCode        = &CloseError{ws.StatusProtocolError, "invalid close code"}
	errCloseReasonUTF8  = &CloseError{ws.StatusInvalidFramePayloadData, "close reason is not valid UTF-8"}
	errTextUTF8         = &CloseError{ws.StatusInvalidFramePayloadData, "text message is not valid UTF-8"}
	errMessageTooBigHdr = &CloseError{ws.StatusMessageTooBig, "frame header declares a message over the size limit"}
)

// Message is what Reader.Next returns: a whole data message (OpText or
// OpBinary) or a control frame (OpClose, OpPing, OpPong).
//
// Payload is unmasked. It aliases either the buffer passed to Next or the
// Reader's own assembly buffer, so it is valid only until the next call to
// Next; a caller that keeps it must copy it.
//
// Compressed is set for a data message the client compressed
// (permessage-deflate, RFC 7692, once SetCompression has allowed it).
// Payload is then the compressed bytes, without the trailer the sender
// removed and unchecked for UTF-8; the connection inflates it (inflate.go)
// within the same size limit before a Handler sees it.
type Message struct {
	OpCode     ws.OpCode
	Payload    []byte
	Compressed bool
}

// Reader is the incremental frame reader of one server-side connection.
//
// It is fed whatever bytes have arrived, in any split, and returns complete
// messages. Between calls it keeps only the bytes of an incomplete frame
// header (at most 13), the state of the current frame, and the payload of a
// message that is still arriving, so an idle connection holds no buffer.
// Payload bytes are unmasked in place and never copied when a whole
// unfragmented frame is in the input buffer.
//
// The zero value is not usable: set the limit with Reset. A Reader is not
// safe for concurrent use; a connection is served by one worker at a time.
type Reader struct {
	// Fields are ordered to pack: the Reader lives in every connection.
	// Lengths are 32-bit (48 bytes in all, not 64): every frame and message
	// length is checked against maxMessageBytes, which Reset caps at
	// MaxMessageLimit.
	maxMessageBytes int32

	// The current frame, while inFrame.
	frameRemain int32 // payload bytes still to come
	frameLen    int32

	// The current data message. msgOp is 0 when none is in progress.
	msgLen int32
	asm    *assembly // nil unless a message or control frame arrives in pieces

	mask    [4]byte
	maskPos uint8 // payload bytes consumed so far, mod 4
	frameOp ws.OpCode
	inFrame bool
	msgOp   ws.OpCode
	msgUTF8 utf8State
	// flags: flagDeflate once compression is negotiated, flagCompressed
	// while the current message is compressed, flagFin when the current
	// frame is the last of its message. (Bits, not bools: the Reader stays
	// at 64 bytes.)
	flags uint8

	// An incomplete frame header carried to the next call.
	pending  [maxHeaderBytes - 1]byte
	npending uint8
}

const (
	flagDeflate    = 1 << iota // permessage-deflate negotiated: RSV1 allowed
	flagCompressed             // the current data message has RSV1
	flagFin                    // the current frame has FIN
)

// assembly holds the pieces of a message or control frame that did not
// arrive in one buffer. It is allocated only then, so that a connection
// between messages holds nothing but the Reader's fixed fields.
type assembly struct {
	msg []byte // data message payload so far
	ctl []byte // control frame payload so far
}

// assemblyInitialBytes caps the first allocation of a message that arrives
// in pieces.
const assemblyInitialBytes = 64 << 10

// MaxMessageLimit is the highest message limit a Reader keeps: a larger
// one given to Reset is taken as this (2 GiB - 1). A message is held whole
// in memory, so no sane limit is near it.
const MaxMessageLimit = math.MaxInt32

// Reset readies r for a new connection whose messages may be at most
// maxMessageBytes long (at most MaxMessageLimit).
func (r *Reader) Reset(maxMessageBytes int64) {
	*r = Reader{maxMessageBytes: int32(min(maxMessageBytes, MaxMessageLimit))}
}

// limit is the longest message r accepts.
func (r *Reader) limit() int64 { return int64(r.maxMessageBytes) }

// lowerLimit lowers the longest message r accepts to n, if n is positive
// and lower.
func (r *Reader) lowerLimit(n int64) {
	if n > 0 && n < r.limit() {
		r.maxMessageBytes = int32(n)
	}
}

// SetCompression allows (or forbids) compressed messages: RSV1 on the
// first frame of a data message, as permessage-deflate (RFC 7692)
// negotiated at the upgrade has it. Without it RSV1 fails the connection
// with 1002.
func (r *Reader) SetCompression(on bool) {
	if on {
		r.flags |= flagDeflate
	} else {
		r.flags &^= flagDeflate
	}
}

// Pending returns the bytes of an incomplete frame header that the last call
// to Next did not consume. The next call must be given them first, followed
// by newly arrived bytes; TakePending copies them out for that.
func (r *Reader) Pending() []byte { return r.pending[:r.npending] }

// TakePending copies the pending header bytes to the start of buf, forgets
// them and returns how many there were.
func (r *Reader) TakePending(buf []byte) int {
	n := copy(buf, r.pending[:r.npending])
	r.npending = 0
	return n
}

// putPending gives back bytes that TakePending returned and that were not
// parsed after all.
func (r *Reader) putPending(p []byte) {
	r.npending = uint8(copy(r.pending[:], p))
}

// Idle reports whether r holds no partial frame or message: a connection
// whose reader is idle is between messages.
func (r *Reader) Idle() bool {
	return !r.inFrame && r.msgOp == 0 && r.npending == 0
}

// Next parses p and returns the first complete message in it and the number
// of bytes of p consumed. When p holds no complete message it returns ok
// false; everything up to n was consumed and p[n:] (an incomplete header,
// kept in the Reader, see Pending) needs more bytes.
//
// p is modified: payloads are unmasked in place.
//
// A non-nil error is a *CloseError: the connection must be failed with its
// code, and r must not be used again.
func (r *Reader) Next(p []byte) (m Message, n int, ok bool, err error) {
	for {
		if !r.inFrame {
			hn, err := r.readHeader(p[n:])
			if err != nil {
				return m, n, false, err
			}
			if hn == 0 {
				// Incomplete header: keep it for the next call.
				r.npending = uint8(copy(r.pending[:], p[n:]))
				return m, len(p), false, nil
			}
			n += hn
		}

		avail := min(int64(len(p)-n), int64(r.frameRemain))
		chunk := p[n : n+int(avail)]
		n += int(avail)
		if avail > 0 {
			ws.Cipher(chunk, r.mask, int(r.maskPos))
			r.maskPos = uint8((int64(r.maskPos) + avail) & 3)
			r.frameRemain -= int32(avail)
		}

		if r.frameOp.IsControl() {
			payload, done := r.controlChunk(chunk)
			if !done {
				return m, n, false, nil
			}
			r.inFrame = false
			if r.frameOp == ws.OpClose {
				if err := checkClosePayload(payload); err != nil {
					return m, n, false, err
				}
			}
			return Message{OpCode: r.frameOp, Payload: payload}, n, true, nil
		}

		if r.msgOp == ws.OpText && r.flags&flagCompressed == 0 {
			if r.msgUTF8 = r.msgUTF8.validUTF8(chunk); r.msgUTF8 == utf8Reject {
				return m, n, false, errTextUTF8
			}
		}
		// Zero copy when the whole unfragmented message is in p.
		fin := r.flags&flagFin != 0
		whole := fin && r.msgLen == 0 && avail == int64(r.frameLen)
		if !whole && avail > 0 {
			if r.asm == nil {
				r.asm = new(assembly)
			}
			if r.asm.msg == nil {
				// Size for the frame, but only up to what a read brings:
				// a declared length is not a reason to allocate.
				r.asm.msg = make([]byte, 0, min(int(r.frameLen), assemblyInitialBytes))
			}
			r.asm.msg = append(r.asm.msg, chunk...)
		}
		r.msgLen += int32(avail)
		if r.frameRemain > 0 {
			return m, n, false, nil
		}
		r.inFrame = false
		if !fin {
			continue
		}
		compressed := r.flags&flagCompressed != 0
		if r.msgOp == ws.OpText && !compressed && r.msgUTF8 != utf8Accept {
			return m, n, false, errTextUTF8
		}
		m = Message{OpCode: r.msgOp, Payload: chunk, Compressed: compressed}
		if !whole && r.asm != nil {
			m.Payload = r.asm.msg
			r.asm.msg = nil
		}
		// Drop the assembly buffer: an idle connection holds no buffer.
		r.dropAssembly()
		r.msgOp, r.msgLen, r.msgUTF8 = 0, 0, utf8Accept
		r.flags &^= flagCompressed
		return m, n, true, nil
	}
}

// readHeader parses and checks the frame header at the start of p and starts
// the frame. It returns 0 when p holds only part of a header.
func (r *Reader) readHeader(p []byte) (int, error) {
	if len(p) < 2 {
		return 0, nil
	}
	b0, b1 := p[0], p[1]
	fin := b0&0x80 != 0
	op := ws.OpCode(b0 & 0x0f)
	rsv1 := b0&0x40 != 0
	// Check what the first two bytes tell before waiting for the rest, so a
	// bad frame fails without waiting for more bytes.
	switch {
	case b0&0x30 != 0, rsv1 && r.flags&flagDeflate == 0:
		return 0, errReservedBits
	case rsv1 && (op.IsControl() || op == ws.OpContinuation):
		return 0, errCompressedBit
	case op.IsReserved():
		return 0, errReservedOpCode
	case b1&0x80 == 0:
		return 0, errUnmasked
	}
	size := 2 + 4
	length := int64(b1 & 0x7f)
	switch length {
	case 126:
		size += 2
	case 127:
		size += 8
	}
	if op.IsControl() {
		switch {
		case length > maxControlPayloadBytes:
			return 0, errControlTooLong
		case !fin:
			return 0, errControlFragment
		}
	} else {
		switch {
		case op == ws.OpContinuation && r.msgOp == 0:
			return 0, errNoContinuation
		case op != ws.OpContinuation && r.msgOp != 0:
			return 0, errNotContinuation
		}
	}
	if len(p) < size {
		return 0, nil
	}
	switch length {
	case 126:
		length = int64(binary.BigEndian.Uint16(p[2:]))
	case 127:
		u := binary.BigEndian.Uint64(p[2:])
		if u>>63 != 0 {
			return 0, errLengthMSB
		}
		length = int64(u)
	}
	if !op.IsControl() {
		// The declared length is checked before anything is allocated.
		if length > int64(r.maxMessageBytes-r.msgLen) {
			return 0, errMessageTooBigHdr
		}
		if op != ws.OpContinuation {
			r.msgOp, r.msgLen, r.msgUTF8 = op, 0, utf8Accept
			if rsv1 {
				r.flags |= flagCompressed
			}
		}
	}
	copy(r.mask[:], p[size-4:size])
	// length fits: a control frame's is at most 125, a data frame's at most
	// maxMessageBytes-msgLen.
	r.frameOp, r.frameLen, r.frameRemain = op, int32(length), int32(length)
	if fin {
		r.flags |= flagFin
	} else {
		r.flags &^= flagFin
	}
	r.maskPos = 0
	r.inFrame = true
	return size, nil
}

// controlChunk collects the payload of a control frame, which may arrive
// split. It returns the whole payload once the frame is complete.
func (r *Reader) controlChunk(chunk []byte) (payload []byte, done bool) {
	if r.frameRemain == 0 && (r.asm == nil || r.asm.ctl == nil) {
		return chunk, true // whole frame in one buffer: no copy
	}
	if r.asm == nil {
		r.asm = new(assembly)
	}
	if r.asm.ctl == nil {
		r.asm.ctl = make([]byte, 0, r.frameLen)
	}
	r.asm.ctl = append(r.asm.ctl, chunk...)
	if r.frameRemain > 0 {
		return nil, false
	}
	payload = r.asm.ctl
	r.asm.ctl = nil
	r.dropAssembly()
	return payload, true
}

// dropAssembly frees the assembly buffers once neither is in use.
func (r *Reader) dropAssembly() {
	if r.asm != nil && r.asm.msg == nil && r.asm.ctl == nil {
		r.asm = nil
	}
}

// checkClosePayload checks the payload of a received close frame: empty, or
// a valid code followed by a UTF-8 reason.
func checkClosePayload(p []byte) error {
	switch {
	case len(p) == 0:
		return nil
	case len(p) == 1:
		return errCloseOneByte
	case !validCloseCode(ws.StatusCode(binary.BigEndian.Uint16(p))):
		return errCloseCode
	case utf8Accept.validUTF8(p[2:]) != utf8Accept:
		return errCloseReasonUTF8
	}
	return nil
}
