package bench

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/gobwas/ws"
)

// The client side of RFC 6455, as the load clients need it: the upgrade
// request and response, masked client frames, and an allocation-free parser
// for the unmasked frames a server sends.

// websocketGUID is the constant of RFC 6455 section 1.3.
const websocketGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// maxResponseHeadBytes bounds the upgrade response a client buffers.
const maxResponseHeadBytes = 8 << 10

// upgradeRequest returns the GET request that upgrades a connection to
// host (the Host header) and path (with its query), offering key, with
// token as a bearer token unless it is empty, and offer as
// Sec-WebSocket-Extensions unless it is empty.
func upgradeRequest(host, path, key, token, offer string) []byte {
	var b bytes.Buffer
	b.WriteString("GET ")
	b.WriteString(path)
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(host)
	b.WriteString("\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ")
	b.WriteString(key)
	if token != "" {
		b.WriteString("\r\nAuthorization: Bearer ")
		b.WriteString(token)
	}
	if offer != "" {
		b.WriteString("\r\nSec-WebSocket-Extensions: ")
		b.WriteString(offer)
	}
	b.WriteString("\r\n\r\n")
	return b.Bytes()
}

// acceptKey returns the Sec-WebSocket-Accept value a server must answer
// key with.
func acceptKey(key string) string {
	h := sha1.Sum([]byte(key + websocketGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// errHandshake is wrapped by every upgrade failure that parseUpgradeResponse
// reports.
var errHandshake = errors.New("upgrade failed")

// parseUpgradeResponse looks for a complete response head in b. It returns
// 0 and no error while the head is incomplete, the head's length once it is
// a valid 101 response that carries accept, and an error wrapping
// errHandshake otherwise (a status other than 101 is reported with its
// status line).
func parseUpgradeResponse(b []byte, accept string) (int, error) {
	end := bytes.Index(b, []byte("\r\n\r\n"))
	if end < 0 {
		if len(b) > maxResponseHeadBytes {
			return 0, fmt.Errorf("%w: response head over %d bytes", errHandshake, maxResponseHeadBytes)
		}
		return 0, nil
	}
	head := b[:end]
	line, rest, _ := bytes.Cut(head, []byte("\r\n"))
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 101")) {
		return 0, fmt.Errorf("%w: %q", errHandshake, truncate(line, 80))
	}
	ok := false
	for len(rest) > 0 {
		line, rest, _ = bytes.Cut(rest, []byte("\r\n"))
		name, value, found := bytes.Cut(line, []byte(":"))
		if found && asciiEqualFold(bytes.TrimSpace(name), "sec-websocket-accept") {
			ok = string(bytes.TrimSpace(value)) == accept
			break
		}
	}
	if !ok {
		return 0, fmt.Errorf("%w: missing or wrong Sec-WebSocket-Accept", errHandshake)
	}
	return end + 4, nil
}

func asciiEqualFold(b []byte, lower string) bool {
	if len(b) != len(lower) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return b[:n]
	}
	return b
}

// frameHeader is a parsed frame header.
type frameHeader struct {
	fin    bool
	rsv    byte
	op     ws.OpCode
	masked bool
	length int64
	size   int // bytes of the header itself
}

// parseFrameHeader parses the frame header at the start of b. ok is false
// when b does not hold the whole header yet. It does not allocate.
func parseFrameHeader(b []byte) (h frameHeader, ok bool) {
	if len(b) < 2 {
		return h, false
	}
	h.fin = b[0]&0x80 != 0
	h.rsv = (b[0] >> 4) & 0x7
	h.op = ws.OpCode(b[0] & 0x0f)
	h.masked = b[1]&0x80 != 0
	h.size = 2
	switch n := b[1] & 0x7f; n {
	case 126:
		if len(b) < 4 {
			return h, false
		}
		h.length = int64(binary.BigEndian.Uint16(b[2:]))
		h.size = 4
	case 127:
		if len(b) < 10 {
			return h, false
		}
		h.length = int64(binary.BigEndian.Uint64(b[2:]) & (1<<63 - 1))
		h.size = 10
	default:
		h.length = int64(n)
	}
	if h.masked {
		h.size += 4
		if len(b) < h.size {
			return h, false
		}
	}
	return h, true
}

// appendClientFrame appends a final client frame with opcode op carrying
// payload, masked with mask as RFC 6455 requires of clients.
func appendClientFrame(dst []byte, op ws.OpCode, payload []byte, mask [4]byte) []byte {
	b0 := 0x80 | byte(op)
	switch n := len(payload); {
	case n <= 125:
		dst = append(dst, b0, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, b0, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, b0, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	ws.Cipher(dst[start:], mask, 0)
	return dst
}

// appendCloseFrame appends a masked close frame with code (none if 0).
func appendCloseFrame(dst []byte, code uint16, mask [4]byte) []byte {
	if code == 0 {
		return appendClientFrame(dst, ws.OpClose, nil, mask)
	}
	var p [2]byte
	binary.BigEndian.PutUint16(p[:], code)
	return appendClientFrame(dst, ws.OpClose, p[:], mask)
}

// parseBroadcast reads the seq and the send time (data.t, unix nanoseconds)
// of a message frame's payload, {"topic":...,"seq":N,"data":{"t":T,...}},
// with keys in any order. ok is false for a payload without a seq, and for
// control replies, which have a "type" key (fanout's
// {"type":"subscribed","seq":41,...}); t is 0 when data has no t. It does
// not allocate.
func parseBroadcast(p []byte) (seq uint64, t int64, ok bool) {
	i := bytes.Index(p, []byte(`"seq":`))
	if i < 0 {
		return 0, 0, false
	}
	if k := bytes.Index(p, []byte(`"type":`)); k >= 0 {
		if d := bytes.Index(p, []byte(`"data":`)); d < 0 || k < d {
			return 0, 0, false
		}
	}
	seq, ok = parseUint(p[i+len(`"seq":`):])
	if !ok {
		return 0, 0, false
	}
	if j := bytes.Index(p, []byte(`"t":`)); j >= 0 {
		if v, ok := parseUint(p[j+len(`"t":`):]); ok {
			t = int64(v)
		}
	}
	return seq, t, true
}

// parseUint parses the decimal number at the start of b, after optional
// spaces.
func parseUint(b []byte) (uint64, bool) {
	for len(b) > 0 && b[0] == ' ' {
		b = b[1:]
	}
	var v uint64
	n := 0
	for n < len(b) && b[n] >= '0' && b[n] <= '9' && n < 20 {
		v = v*10 + uint64(b[n]-'0')
		n++
	}
	return v, n > 0
}

// broadcastData returns the JSON data of a timed broadcast message, padded
// with a "p" string so that the data is at least size bytes long. The pad
// reads like records of a feed, numbers varying from message to message, so
// that it compresses about as such data does (1 KiB to 0.42 of its size,
// TestBroadcastDataCompresses), not as a run of one byte would.
func broadcastData(t int64, size int) []byte {
	b := make([]byte, 0, max(size, 32))
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, t, 10)
	if pad := size - len(b) - len(`,"p":""}`); pad > 0 {
		b = append(b, `,"p":"`...)
		end := len(b) + pad
		x := uint32(t) | 1
		next := func(n uint32) uint32 {
			x = x*1664525 + 1013904223 // a linear congruential generator
			return (x >> 8) % n
		}
		for len(b) < end {
			b = append(b, "id:"...)
			b = strconv.AppendUint(b, uint64(next(100000)), 10)
			b = append(b, " bid:"...)
			b = strconv.AppendUint(b, uint64(100+next(50)), 10)
			b = append(b, '.')
			b = strconv.AppendUint(b, uint64(10+next(90)), 10)
			b = append(b, " qty:"...)
			b = strconv.AppendUint(b, uint64(next(1000)), 10)
			b = append(b, "; "...)
		}
		b = append(b[:end], '"')
	}
	return append(b, '}')
}
