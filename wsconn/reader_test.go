package wsconn

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"testing"
	"unicode/utf8"
	"unsafe"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// testFrame describes a client frame for the tests to encode, including
// frames that break the rules.
type testFrame struct {
	fin      bool
	rsv      byte // RSV bits as they sit in the first byte: 0x40, 0x20, 0x10
	op       ws.OpCode
	payload  []byte
	unmasked bool
	mask     [4]byte // zero: a fixed non-trivial mask
	lenForm  int     // 0: the shortest length encoding; 7, 16 or 64 to force one
	declared *uint64 // the length in the header, when not len(payload)
}

var defaultMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// encode returns the frame's bytes, the payload masked.
func (f testFrame) encode() []byte {
	b0 := f.rsv | byte(f.op)
	if f.fin {
		b0 |= 0x80
	}
	n := uint64(len(f.payload))
	if f.declared != nil {
		n = *f.declared
	}
	form := f.lenForm
	if form == 0 {
		switch {
		case n <= 125:
			form = 7
		case n <= 0xffff:
			form = 16
		default:
			form = 64
		}
	}
	var b1 byte
	if !f.unmasked {
		b1 = 0x80
	}
	p := make([]byte, 0, maxHeaderBytes+len(f.payload))
	switch form {
	case 7:
		p = append(p, b0, b1|byte(n))
	case 16:
		p = append(p, b0, b1|126)
		p = binary.BigEndian.AppendUint16(p, uint16(n))
	case 64:
		p = append(p, b0, b1|127)
		p = binary.BigEndian.AppendUint64(p, n)
	default:
		panic(fmt.Sprintf("bad length form %d", form))
	}
	if f.unmasked {
		return append(p, f.payload...)
	}
	mask := f.mask
	if mask == [4]byte{} {
		mask = defaultMask
	}
	p = append(p, mask[:]...)
	start := len(p)
	p = append(p, f.payload...)
	ws.Cipher(p[start:], mask, 0)
	return p
}

// clientFrame returns a masked client frame.
func clientFrame(fin bool, op ws.OpCode, payload []byte) []byte {
	return testFrame{fin: fin, op: op, payload: payload}.encode()
}

func clientText(s string) []byte   { return clientFrame(true, ws.OpText, []byte(s)) }
func clientBinary(p []byte) []byte { return clientFrame(true, ws.OpBinary, p) }
func clientPing(s string) []byte   { return clientFrame(true, ws.OpPing, []byte(s)) }
func clientPong(s string) []byte   { return clientFrame(true, ws.OpPong, []byte(s)) }
func clientClose(p []byte) []byte  { return clientFrame(true, ws.OpClose, p) }
func lenPtr(n uint64) *uint64      { return &n }
func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

func cat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// textPayload returns valid UTF-8 of exactly n bytes with characters of
// every length.
func textPayload(n int) []byte {
	p := make([]byte, 0, n)
	for len(p)+10 <= n {
		p = append(p, "aé✓🙂"...)
	}
	for len(p) < n {
		p = append(p, 'z')
	}
	return p
}

func binaryPayload(n int, seed uint64) []byte {
	rng := rand.New(rand.NewPCG(seed, uint64(n)))
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(rng.Uint32())
	}
	return p
}

// msg is a message as the tests record it: the payload copied.
type msg struct {
	Op      ws.OpCode
	Payload []byte
}

func (m msg) String() string { return fmt.Sprintf("%v(%d bytes)", m.Op, len(m.Payload)) }

// feedResult is what a Reader made of a stream.
type feedResult struct {
	Msgs    []msg
	Code    ws.StatusCode // of the error; 0 when none
	Err     error
	Idle    bool
	Pending []byte
}

// within reports whether p starts inside buf.
func within(p, buf []byte) bool {
	if len(p) == 0 || len(buf) == 0 {
		return false
	}
	a := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	return a >= lo && a < lo+uintptr(len(buf))
}

// feed gives stream to r in reads of the sizes that next returns, the way
// Conn.turn does: each read lands in one reused worker buffer, after the
// pending header bytes that TakePending copies to its front, and Next is
// called until it returns no message. Between reads the buffer is
// scribbled over, so that a Reader that kept a reference into it would be
// caught. It checks the invariants of every call.
func feed(t testing.TB, r *Reader, stream []byte, next func() int) feedResult {
	t.Helper()
	var res feedResult
	buf := make([]byte, len(stream)+maxHeaderBytes)
	for off := 0; off < len(stream); {
		k := min(max(next(), 1), len(stream)-off)
		pre := r.TakePending(buf)
		if r.npending != 0 {
			t.Fatalf("TakePending left %d bytes pending", r.npending)
		}
		copy(buf[pre:], stream[off:off+k])
		off += k
		p := buf[:pre+k]
		for len(p) > 0 {
			m, n, ok, err := r.Next(p)
			if n < 0 || n > len(p) {
				t.Fatalf("Next consumed %d of %d bytes", n, len(p))
			}
			p = p[n:]
			if err != nil {
				var ce *CloseError
				if !errors.As(err, &ce) {
					t.Fatalf("Next returned %T %v, want *CloseError", err, err)
				}
				if ok {
					t.Fatalf("Next returned ok with error %v", err)
				}
				res.Err, res.Code = err, ce.Code
				return res
			}
			if !ok {
				if len(p) != 0 {
					t.Fatalf("Next returned no message but left %d bytes unconsumed", len(p))
				}
				if int(r.npending) > maxHeaderBytes-1 {
					t.Fatalf("%d bytes pending", r.npending)
				}
				break
			}
			switch m.OpCode {
			case ws.OpText, ws.OpBinary:
				if int64(len(m.Payload)) > r.limit() {
					t.Fatalf("%d-byte message over the %d-byte limit", len(m.Payload), r.maxMessageBytes)
				}
				if m.OpCode == ws.OpText && !m.Compressed && !utf8.Valid(m.Payload) {
					t.Fatalf("text message is not valid UTF-8: %q", m.Payload)
				}
				if r.asm != nil || r.msgOp != 0 || r.msgLen != 0 {
					t.Fatalf("reader holds message state after a message: assembly %v, op %v, len %d", r.asm != nil, r.msgOp, r.msgLen)
				}
			case ws.OpClose, ws.OpPing, ws.OpPong:
				if len(m.Payload) > maxControlPayloadBytes {
					t.Fatalf("%d-byte control frame", len(m.Payload))
				}
				if r.asm != nil && (r.asm.ctl != nil || r.msgOp == 0) {
					t.Fatalf("reader holds an assembly buffer after a control frame with no message open")
				}
			default:
				t.Fatalf("message with opcode %v", m.OpCode)
			}
			res.Msgs = append(res.Msgs, msg{m.OpCode, bytes.Clone(m.Payload)})
		}
		// Scribble what this read used: the next read overwrites it.
		for i := range buf[:pre+k] {
			buf[i] = 0xa5
		}
	}
	res.Idle = r.Idle()
	res.Pending = bytes.Clone(r.Pending())
	return res
}

// feedWhole gives stream to a new Reader in one read.
func feedWhole(t testing.TB, limit int64, stream []byte) feedResult {
	var r Reader
	r.Reset(limit)
	return feed(t, &r, stream, func() int { return len(stream) })
}

// feedSizes gives stream to a new Reader in reads of the given sizes, the
// last one repeated.
func feedSizes(t testing.TB, limit int64, stream []byte, sizes ...int) feedResult {
	var r Reader
	r.Reset(limit)
	i := 0
	return feed(t, &r, stream, func() int {
		n := sizes[min(i, len(sizes)-1)]
		i++
		return n
	})
}

// requireSameResult fails unless got and want hold the same messages and
// the same error.
func requireSameResult(t testing.TB, want, got feedResult, format string, args ...any) {
	t.Helper()
	if len(want.Msgs) != len(got.Msgs) {
		t.Fatalf("%s: %d messages %v, want %d %v", fmt.Sprintf(format, args...), len(got.Msgs), got.Msgs, len(want.Msgs), want.Msgs)
	}
	for i := range want.Msgs {
		if want.Msgs[i].Op != got.Msgs[i].Op || !bytes.Equal(want.Msgs[i].Payload, got.Msgs[i].Payload) {
			t.Fatalf("%s: message %d is %v %q, want %v %q", fmt.Sprintf(format, args...), i,
				got.Msgs[i].Op, got.Msgs[i].Payload, want.Msgs[i].Op, want.Msgs[i].Payload)
		}
	}
	if want.Err != got.Err || want.Code != got.Code {
		t.Fatalf("%s: error %v (code %d), want %v (code %d)", fmt.Sprintf(format, args...), got.Err, got.Code, want.Err, want.Code)
	}
	if want.Err == nil && (want.Idle != got.Idle || !bytes.Equal(want.Pending, got.Pending)) {
		t.Fatalf("%s: idle %v pending % x, want idle %v pending % x", fmt.Sprintf(format, args...), got.Idle, got.Pending, want.Idle, want.Pending)
	}
}

// requireSameAtEverySplit feeds stream split in two at every position, and
// one byte at a time, and requires the whole-buffer result each time.
func requireSameAtEverySplit(t testing.TB, limit int64, stream []byte) feedResult {
	t.Helper()
	want := feedWhole(t, limit, stream)
	for k := 1; k < len(stream); k++ {
		got := feedSizes(t, limit, stream, k, len(stream))
		requireSameResult(t, want, got, "split at %d", k)
	}
	requireSameResult(t, want, feedSizes(t, limit, stream, 1), "one byte at a time")
	return want
}

// refParse is an independent, whole-buffer model of the rules the Reader
// enforces, written for the tests: it returns the messages in stream and
// the close code of the first violation, including the violations that the
// Reader reports before a frame is complete (a bad header as soon as its
// first two bytes are known, invalid UTF-8 as soon as the offending byte
// is there, a size over the limit as soon as the length is known).
func refParse(stream []byte, limit int64) (msgs []msg, code ws.StatusCode, idle bool, pending []byte) {
	var (
		inMsg  bool
		msgOp  ws.OpCode
		msgBuf []byte
	)
	for i := 0; ; {
		rest := stream[i:]
		if len(rest) == 0 {
			return msgs, 0, !inMsg, nil
		}
		if len(rest) < 2 {
			return msgs, 0, false, rest
		}
		b0, b1 := rest[0], rest[1]
		fin, op := b0&0x80 != 0, ws.OpCode(b0&0x0f)
		control := op >= 8
		switch {
		case b0&0x70 != 0:
			return msgs, 1002, false, nil
		case op > 2 && op < 8, op > 10:
			return msgs, 1002, false, nil
		case b1&0x80 == 0:
			return msgs, 1002, false, nil
		case control && b1&0x7f > 125:
			return msgs, 1002, false, nil
		case control && !fin:
			return msgs, 1002, false, nil
		case !control && op == 0 && !inMsg:
			return msgs, 1002, false, nil
		case !control && op != 0 && inMsg:
			return msgs, 1002, false, nil
		}
		hdr, length := 6, uint64(b1&0x7f)
		switch length {
		case 126:
			hdr = 8
		case 127:
			hdr = 14
		}
		if len(rest) < hdr {
			return msgs, 0, false, rest
		}
		switch length {
		case 126:
			length = uint64(binary.BigEndian.Uint16(rest[2:]))
		case 127:
			length = binary.BigEndian.Uint64(rest[2:])
			if length >= 1<<63 {
				return msgs, 1002, false, nil
			}
		}
		if !control && length > uint64(limit)-uint64(len(msgBuf)) {
			return msgs, 1009, false, nil
		}
		var mask [4]byte
		copy(mask[:], rest[hdr-4:hdr])
		avail := min(uint64(len(rest)-hdr), length)
		payload := bytes.Clone(rest[hdr : hdr+int(avail)])
		for j := range payload {
			payload[j] ^= mask[j%4]
		}
		complete := avail == length
		if control {
			if !complete {
				return msgs, 0, false, nil
			}
			if op == ws.OpClose {
				switch {
				case len(payload) == 1:
					return msgs, 1002, false, nil
				case len(payload) >= 2:
					c := binary.BigEndian.Uint16(payload)
					if !(c >= 1000 && c <= 1003 || c >= 1007 && c <= 1014 || c >= 3000 && c <= 4999) {
						return msgs, 1002, false, nil
					}
					if !utf8.Valid(payload[2:]) {
						return msgs, 1007, false, nil
					}
				}
			}
			msgs = append(msgs, msg{op, payload})
			i += hdr + int(length)
			continue
		}
		if op != 0 {
			inMsg, msgOp, msgBuf = true, op, []byte{}
		}
		msgBuf = append(msgBuf, payload...)
		if msgOp == ws.OpText && refFirstReject(msgBuf) >= 0 {
			return msgs, 1007, false, nil
		}
		if !complete {
			return msgs, 0, false, nil
		}
		i += hdr + int(length)
		if !fin {
			continue
		}
		if msgOp == ws.OpText && !utf8.Valid(msgBuf) {
			return msgs, 1007, false, nil
		}
		msgs = append(msgs, msg{msgOp, msgBuf})
		inMsg, msgOp, msgBuf = false, 0, nil
	}
}

// requireMatchesRef compares a Reader's result with refParse.
func requireMatchesRef(t testing.TB, stream []byte, limit int64, got feedResult, what string) {
	t.Helper()
	msgs, code, idle, pending := refParse(stream, limit)
	want := feedResult{Msgs: msgs, Code: code, Idle: idle, Pending: pending}
	if len(want.Msgs) != len(got.Msgs) {
		t.Fatalf("%s: %d messages %v, reference %d %v", what, len(got.Msgs), got.Msgs, len(want.Msgs), want.Msgs)
	}
	for i := range want.Msgs {
		if want.Msgs[i].Op != got.Msgs[i].Op || !bytes.Equal(want.Msgs[i].Payload, got.Msgs[i].Payload) {
			t.Fatalf("%s: message %d is %v %q, reference %v %q", what, i, got.Msgs[i].Op, got.Msgs[i].Payload, want.Msgs[i].Op, want.Msgs[i].Payload)
		}
	}
	if got.Code != want.Code {
		t.Fatalf("%s: error %v (code %d), reference code %d", what, got.Err, got.Code, want.Code)
	}
	if want.Code == 0 && (got.Idle != want.Idle || !bytes.Equal(got.Pending, want.Pending)) {
		t.Fatalf("%s: idle %v pending % x, reference idle %v pending % x", what, got.Idle, got.Pending, want.Idle, want.Pending)
	}
}

func TestTestFrameEncoding(t *testing.T) {
	// The helper against gobwas/ws, which reads client frames too.
	for _, n := range []int{0, 1, 125, 126, 65535, 65536} {
		p := binaryPayload(n, 1)
		frame := testFrame{fin: true, op: ws.OpBinary, payload: p}.encode()
		rd := bytes.NewReader(frame)
		h, err := ws.ReadHeader(rd)
		require.NoError(t, err)
		require.True(t, h.Masked)
		require.True(t, h.Fin)
		require.Equal(t, int64(n), h.Length)
		got := make([]byte, h.Length)
		_, err = io.ReadFull(rd, got)
		require.NoError(t, err)
		ws.Cipher(got, h.Mask, 0)
		require.True(t, bytes.Equal(p, got))
	}
}

const testLimit = 1 << 20

func TestReaderSingleFrame(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 65535, 65536, 100000} {
		for _, op := range []ws.OpCode{ws.OpText, ws.OpBinary} {
			t.Run(fmt.Sprintf("%v/%d", op, n), func(t *testing.T) {
				payload := binaryPayload(n, 7)
				if op == ws.OpText {
					payload = textPayload(n)
				}
				frame := clientFrame(true, op, payload)
				var r Reader
				r.Reset(testLimit)
				in := bytes.Clone(frame) // Next unmasks in place
				m, consumed, ok, err := r.Next(in)
				require.NoError(t, err)
				require.True(t, ok)
				assert.Equal(t, len(frame), consumed)
				assert.Equal(t, op, m.OpCode)
				require.True(t, bytes.Equal(payload, m.Payload), "payload differs")
				if n > 0 {
					// Zero copy: the payload is the input, unmasked in place.
					assert.True(t, within(m.Payload, in), "payload does not alias the input buffer")
					assert.Equal(t, unsafe.SliceData(in[len(in)-n:]), unsafe.SliceData(m.Payload))
				}
				assert.Nil(t, r.asm)
				assert.True(t, r.Idle())

				// The same frame one byte at a time, and split at every
				// position of the header and around the middle.
				res := feedSizes(t, testLimit, frame, 1)
				require.Len(t, res.Msgs, 1)
				require.True(t, bytes.Equal(payload, res.Msgs[0].Payload))
				for k := 1; k < min(len(frame), 20); k++ {
					requireSameResult(t, feedResult{Msgs: []msg{{op, payload}}, Idle: true}, feedSizes(t, testLimit, frame, k, len(frame)), "split at %d", k)
				}
				for _, k := range []int{len(frame) / 2, len(frame) - 1} {
					if k > 0 {
						requireSameResult(t, feedResult{Msgs: []msg{{op, payload}}, Idle: true}, feedSizes(t, testLimit, frame, k, len(frame)), "split at %d", k)
					}
				}
			})
		}
	}
}

func TestReaderLengthEncodings(t *testing.T) {
	// Non-minimal length encodings are accepted (RFC 6455 asks for the
	// minimal one but does not make the reader fail the connection).
	for _, form := range []int{7, 16, 64} {
		p := textPayload(100)
		frame := testFrame{fin: true, op: ws.OpText, payload: p, lenForm: form}.encode()
		res := requireSameAtEverySplit(t, testLimit, frame)
		require.NoError(t, res.Err)
		require.Len(t, res.Msgs, 1)
		assert.Equal(t, p, res.Msgs[0].Payload)
	}
}

func TestReaderMasks(t *testing.T) {
	// Payload lengths that are not multiples of 4, split across reads at
	// every offset: the mask position must carry over.
	for _, mask := range [][4]byte{{0, 0, 0, 0}, {0xff, 0xff, 0xff, 0xff}, {1, 2, 3, 4}} {
		p := binaryPayload(37, 3)
		frame := testFrame{fin: true, op: ws.OpBinary, payload: p, mask: mask}.encode()
		if mask == [4]byte{} {
			// encode substitutes the default for a zero mask: build it by hand.
			frame = append([]byte{0x82, 0x80 | 37, 0, 0, 0, 0}, p...)
		}
		res := requireSameAtEverySplit(t, testLimit, frame)
		require.Len(t, res.Msgs, 1)
		assert.Equal(t, p, res.Msgs[0].Payload)
	}
}

func TestReaderFragmented(t *testing.T) {
	euro := "€" // 3 bytes, split across fragments below
	for _, tc := range []struct {
		name   string
		frames [][]byte
		want   msg
	}{
		{"text 3 fragments", [][]byte{
			clientFrame(false, ws.OpText, []byte("Hel")),
			clientFrame(false, ws.OpContinuation, []byte("lo, ")),
			clientFrame(true, ws.OpContinuation, []byte("world")),
		}, msg{ws.OpText, []byte("Hello, world")}},
		{"binary 2 fragments", [][]byte{
			clientFrame(false, ws.OpBinary, []byte{0, 1, 2}),
			clientFrame(true, ws.OpContinuation, []byte{3, 4}),
		}, msg{ws.OpBinary, []byte{0, 1, 2, 3, 4}}},
		{"character split across fragments", [][]byte{
			clientFrame(false, ws.OpText, []byte("a"+euro[:1])),
			clientFrame(false, ws.OpContinuation, []byte(euro[1:2])),
			clientFrame(true, ws.OpContinuation, []byte(euro[2:]+"b")),
		}, msg{ws.OpText, []byte("a" + euro + "b")}},
		{"empty fragments", [][]byte{
			clientFrame(false, ws.OpText, nil),
			clientFrame(false, ws.OpContinuation, nil),
			clientFrame(true, ws.OpContinuation, []byte("x")),
		}, msg{ws.OpText, []byte("x")}},
		{"all fragments empty", [][]byte{
			clientFrame(false, ws.OpBinary, nil),
			clientFrame(true, ws.OpContinuation, nil),
		}, msg{ws.OpBinary, []byte{}}},
		{"empty final fragment", [][]byte{
			clientFrame(false, ws.OpText, []byte("abc")),
			clientFrame(true, ws.OpContinuation, nil),
		}, msg{ws.OpText, []byte("abc")}},
		{"large fragments", [][]byte{
			clientFrame(false, ws.OpBinary, binaryPayload(70000, 1)),
			clientFrame(false, ws.OpContinuation, binaryPayload(300, 2)),
			clientFrame(true, ws.OpContinuation, binaryPayload(1000, 3)),
		}, msg{ws.OpBinary, cat(binaryPayload(70000, 1), binaryPayload(300, 2), binaryPayload(1000, 3))}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := cat(tc.frames...)
			var res feedResult
			if len(stream) < 2000 {
				res = requireSameAtEverySplit(t, testLimit, stream)
			} else {
				res = feedWhole(t, testLimit, stream)
				requireSameResult(t, res, feedSizes(t, testLimit, stream, 1), "one byte at a time")
				requireSameResult(t, res, feedSizes(t, testLimit, stream, 4096), "4 KiB reads")
			}
			require.NoError(t, res.Err)
			require.Len(t, res.Msgs, 1)
			assert.Equal(t, tc.want.Op, res.Msgs[0].Op)
			assert.True(t, bytes.Equal(tc.want.Payload, res.Msgs[0].Payload), "payload differs")
			assert.True(t, res.Idle)
			requireMatchesRef(t, stream, testLimit, res, "reference")
		})
	}
}

func TestReaderControlInFragmentedMessage(t *testing.T) {
	stream := cat(
		clientFrame(false, ws.OpText, []byte("Hel")),
		clientPing("p1"),
		clientFrame(false, ws.OpContinuation, []byte("lo, ")),
		clientPong(""),
		clientPing(string(bytes.Repeat([]byte("x"), 125))),
		clientFrame(true, ws.OpContinuation, []byte("world")),
		clientBinary([]byte{9}),
		clientFrame(false, ws.OpBinary, []byte{1}),
		clientClose(closePayload(1000, "bye")),
	)
	res := requireSameAtEverySplit(t, testLimit, stream)
	require.NoError(t, res.Err)
	want := []msg{
		{ws.OpPing, []byte("p1")},
		{ws.OpPong, []byte{}},
		{ws.OpPing, bytes.Repeat([]byte("x"), 125)},
		{ws.OpText, []byte("Hello, world")},
		{ws.OpBinary, []byte{9}},
		{ws.OpClose, closePayload(1000, "bye")},
	}
	requireSameResult(t, feedResult{Msgs: want}, res, "messages")
	assert.False(t, res.Idle, "a fragmented binary message is still open")
	requireMatchesRef(t, stream, testLimit, res, "reference")
}

func TestReaderManyMessagesInOneBuffer(t *testing.T) {
	frames := [][]byte{
		clientText("one"),
		clientBinary([]byte{1, 2, 3}),
		clientPing(""),
		clientText(""),
		clientText(string(textPayload(300))),
		clientBinary(binaryPayload(70000, 5)),
		clientPong("pong"),
		clientClose(nil),
	}
	stream := cat(frames...)
	var r Reader
	r.Reset(testLimit)
	in := bytes.Clone(stream) // Next unmasks in place
	p := in
	for i, f := range frames {
		start := len(in) - len(p)
		m, n, ok, err := r.Next(p)
		require.NoError(t, err, "frame %d", i)
		require.True(t, ok, "frame %d", i)
		require.Equal(t, len(f), n, "frame %d: consumed", i)
		if len(m.Payload) > 0 {
			// Each payload aliases its own frame in the buffer.
			assert.True(t, within(m.Payload, in[start:start+n]), "frame %d payload is not in place", i)
		}
		p = p[n:]
		assert.True(t, r.Idle())
		assert.Nil(t, r.asm)
	}
	assert.Empty(t, p)

	res := requireSameAtEverySplit(t, testLimit, stream[:2000])
	requireMatchesRef(t, stream[:2000], testLimit, res, "prefix, reference")
	var sizes []int
	rng := rand.New(rand.NewPCG(1, 1))
	for range 50 {
		sizes = sizes[:0]
		for range 200 {
			sizes = append(sizes, 1+rng.IntN(3000))
		}
		got := feedSizes(t, testLimit, stream, sizes...)
		require.Len(t, got.Msgs, len(frames))
		requireMatchesRef(t, stream, testLimit, got, "random reads")
	}
}

// mixedStream is a stream with every kind of frame: lengths in every
// encoding, fragmented messages with control frames inside, empty frames.
func mixedStream() []byte {
	return cat(
		clientText("hello"),
		testFrame{fin: true, op: ws.OpBinary, payload: binaryPayload(200, 1)}.encode(),
		testFrame{fin: true, op: ws.OpText, payload: textPayload(30), lenForm: 64}.encode(),
		testFrame{fin: true, op: ws.OpText, payload: textPayload(20), lenForm: 16}.encode(),
		clientFrame(false, ws.OpText, textPayload(13)),
		clientPing("are you there"),
		clientFrame(false, ws.OpContinuation, []byte("\xe2\x82")),
		clientFrame(true, ws.OpContinuation, []byte("\xac!")),
		clientText(""),
		clientBinary(nil),
		clientFrame(false, ws.OpBinary, binaryPayload(5, 2)),
		testFrame{fin: false, op: ws.OpContinuation, payload: binaryPayload(140, 3), lenForm: 64}.encode(),
		clientPong(""),
		clientClose(nil), // a close inside a fragmented message is allowed
		clientFrame(true, ws.OpContinuation, binaryPayload(1, 4)),
		clientClose(closePayload(1001, "going away ✓")),
	)
}

func TestReaderEverySplit(t *testing.T) {
	stream := mixedStream()
	res := requireSameAtEverySplit(t, testLimit, stream)
	require.NoError(t, res.Err)
	require.Len(t, res.Msgs, 12)
	assert.True(t, res.Idle)
	requireMatchesRef(t, stream, testLimit, res, "reference")

	// Three reads, split at every pair of positions (a sample of them).
	for a := 1; a < len(stream); a += 3 {
		for b := a + 1; b < len(stream); b += 7 {
			requireSameResult(t, res, feedSizes(t, testLimit, stream, a, b-a, len(stream)), "split at %d and %d", a, b)
		}
	}
}

func TestReaderIdleHoldsNothing(t *testing.T) {
	payload := textPayload(1000)
	frame := clientText(string(payload))
	var r Reader
	r.Reset(testLimit)
	// Header and half the payload, then the rest: the message is assembled
	// in the Reader's buffer and the buffer dropped once it is returned.
	res := feed(t, &r, frame, func() int { return 500 })
	require.Len(t, res.Msgs, 1)
	assert.Nil(t, r.asm)
	assert.True(t, r.Idle())
	assert.Empty(t, r.Pending())

	// A split control frame: its buffer is dropped too.
	res = feed(t, &r, clientPing("0123456789"), func() int { return 8 })
	require.Len(t, res.Msgs, 1)
	assert.Nil(t, r.asm)
	assert.True(t, r.Idle())

	// A fragmented message: buffered while open, dropped after.
	stream := cat(clientFrame(false, ws.OpBinary, []byte{1, 2}), clientFrame(true, ws.OpContinuation, []byte{3}))
	res = feed(t, &r, stream[:8], func() int { return 100 })
	require.Empty(t, res.Msgs)
	require.NotNil(t, r.asm)
	assert.Equal(t, []byte{1, 2}, r.asm.msg)
	assert.False(t, r.Idle())
	// A control frame split across reads inside the open message: its
	// buffer goes, the message's stays.
	res = feed(t, &r, clientPong("pong"), func() int { return 7 })
	require.Len(t, res.Msgs, 1)
	require.NotNil(t, r.asm)
	assert.Nil(t, r.asm.ctl)
	assert.Equal(t, []byte{1, 2}, r.asm.msg)
	res = feed(t, &r, stream[8:], func() int { return 100 })
	require.Len(t, res.Msgs, 1)
	assert.Equal(t, []byte{1, 2, 3}, res.Msgs[0].Payload)
	assert.Nil(t, r.asm)
	assert.True(t, r.Idle())
}

func TestReaderPendingHeader(t *testing.T) {
	frame := testFrame{fin: true, op: ws.OpBinary, payload: []byte("abc"), lenForm: 64}.encode()
	require.Len(t, frame, 17)
	for k := 1; k < maxHeaderBytes; k++ {
		var r Reader
		r.Reset(testLimit)
		buf := make([]byte, 64)
		copy(buf, frame[:k])
		_, n, ok, err := r.Next(buf[:k])
		require.NoError(t, err)
		require.False(t, ok)
		require.Equal(t, k, n, "an incomplete header is consumed into the Reader")
		require.Equal(t, frame[:k], r.Pending())
		require.False(t, r.Idle())

		// A read that found nothing gives the bytes back (turn.go on EAGAIN).
		clear(buf)
		off := r.TakePending(buf)
		require.Equal(t, k, off)
		require.Empty(t, r.Pending())
		r.putPending(buf[:off])
		require.Equal(t, frame[:k], r.Pending())

		// The next read: pending bytes first, then the new ones.
		clear(buf)
		off = r.TakePending(buf)
		n2 := copy(buf[off:], frame[k:])
		m, n, ok, err := r.Next(buf[:off+n2])
		require.NoError(t, err)
		require.True(t, ok)
		require.Equal(t, off+n2, n)
		require.Equal(t, []byte("abc"), m.Payload)
		require.True(t, r.Idle())
	}
}

func TestReaderZeroCopy(t *testing.T) {
	var r Reader
	r.Reset(testLimit)

	// A control frame whole in the buffer is not copied either.
	buf := clientPing("ping!")
	m, _, ok, err := r.Next(buf)
	require.NoError(t, err)
	require.True(t, ok)
	assert.True(t, within(m.Payload, buf))

	// A frame whose header came in an earlier read and whose payload is
	// whole in this one: still in place.
	frame := clientText("in place")
	_, _, ok, err = r.Next(frame[:6])
	require.NoError(t, err)
	require.False(t, ok)
	buf = append([]byte(nil), frame[6:]...)
	m, _, ok, err = r.Next(buf)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "in place", string(m.Payload))
	assert.True(t, within(m.Payload, buf))

	// A payload split across reads is assembled, so it cannot alias.
	frame = clientText("assembled")
	_, _, ok, err = r.Next(frame[:9])
	require.NoError(t, err)
	require.False(t, ok)
	buf = append([]byte(nil), frame[9:]...)
	m, _, ok, err = r.Next(buf)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "assembled", string(m.Payload))
	assert.False(t, within(m.Payload, buf))
}

func TestReaderLimit(t *testing.T) {
	const limit = 1000
	for _, tc := range []struct {
		name   string
		stream []byte
		want   error
	}{
		{"exactly the limit", clientBinary(binaryPayload(limit, 1)), nil},
		{"text exactly the limit", clientText(string(textPayload(limit))), nil},
		{"fragments up to the limit", cat(
			clientFrame(false, ws.OpBinary, binaryPayload(600, 1)),
			clientFrame(true, ws.OpContinuation, binaryPayload(400, 2))), nil},
		{"one over", clientBinary(binaryPayload(limit+1, 1)), errMessageTooBigHdr},
		{"fragments one over", cat(
			clientFrame(false, ws.OpBinary, binaryPayload(600, 1)),
			clientFrame(true, ws.OpContinuation, binaryPayload(401, 2))), errMessageTooBigHdr},
		{"empty fragments then over", cat(
			clientFrame(false, ws.OpText, nil),
			clientFrame(false, ws.OpContinuation, textPayload(limit)),
			clientFrame(true, ws.OpContinuation, []byte("x"))), errMessageTooBigHdr},
		{"huge 64-bit length", testFrame{fin: true, op: ws.OpBinary, declared: lenPtr(1 << 62)}.encode(), errMessageTooBigHdr},
		{"max 64-bit length", testFrame{fin: true, op: ws.OpBinary, declared: lenPtr(1<<63 - 1)}.encode(), errMessageTooBigHdr},
		{"control frames do not count", cat(
			clientFrame(false, ws.OpBinary, binaryPayload(limit-1, 1)),
			clientPing(string(textPayload(125))),
			clientFrame(true, ws.OpContinuation, []byte{1})), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := requireSameAtEverySplit(t, limit, tc.stream)
			requireMatchesRef(t, tc.stream, limit, res, "reference")
			if tc.want == nil {
				require.NoError(t, res.Err)
				return
			}
			require.Equal(t, tc.want, res.Err)
			assert.Equal(t, ws.StatusMessageTooBig, res.Code)
		})
	}

	// The limit is enforced at the header, before any payload arrives.
	var r Reader
	r.Reset(limit)
	hdr := testFrame{fin: true, op: ws.OpText, declared: lenPtr(limit + 1)}.encode()
	require.Len(t, hdr, 8)
	_, _, ok, err := r.Next(hdr)
	require.False(t, ok)
	require.Equal(t, errMessageTooBigHdr, err)
	assert.Nil(t, r.asm, "nothing allocated for an oversized message")
}

// TestReaderLimitCap: the Reader counts lengths in 32 bits, so a limit
// above MaxMessageLimit is taken as MaxMessageLimit. A frame may declare up
// to the limit, the fragments of a message add up to it, and one byte more
// is refused at the header (with 64-bit counts the limit below was 1 TiB).
func TestReaderLimitCap(t *testing.T) {
	assert.LessOrEqual(t, unsafe.Sizeof(Reader{}), uintptr(48), "size of Reader")

	var r Reader
	r.Reset(1 << 40)
	assert.Equal(t, int64(MaxMessageLimit), r.limit())
	_, _, _, err := r.Next(testFrame{fin: true, op: ws.OpBinary, declared: lenPtr(MaxMessageLimit + 1)}.encode())
	require.Equal(t, errMessageTooBigHdr, err)

	r.Reset(1 << 40)
	hdr := testFrame{fin: true, op: ws.OpBinary, declared: lenPtr(MaxMessageLimit)}.encode()
	_, n, ok, err := r.Next(hdr)
	require.NoError(t, err)
	assert.False(t, ok)
	assert.Equal(t, len(hdr), n)
	assert.Equal(t, int32(MaxMessageLimit), r.frameRemain, "the whole frame is still to come")

	for _, tc := range []struct {
		rest uint64
		want error
	}{{MaxMessageLimit - 100, nil}, {MaxMessageLimit - 99, errMessageTooBigHdr}} {
		r.Reset(MaxMessageLimit)
		_, _, _, err := r.Next(clientFrame(false, ws.OpBinary, make([]byte, 100)))
		require.NoError(t, err)
		_, _, _, err = r.Next(testFrame{fin: true, op: ws.OpContinuation, declared: lenPtr(tc.rest)}.encode())
		assert.Equal(t, tc.want, err, "a continuation of %d bytes after 100", tc.rest)
	}
}

func TestReaderErrors(t *testing.T) {
	ok := clientFrame(false, ws.OpText, []byte("ok"))
	var reserved []struct {
		name   string
		stream []byte
		want   *CloseError
	}
	for _, op := range []ws.OpCode{3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf} {
		reserved = append(reserved, struct {
			name   string
			stream []byte
			want   *CloseError
		}{fmt.Sprintf("reserved opcode %#x", byte(op)), clientFrame(true, op, nil), errReservedOpCode})
	}
	cases := []struct {
		name   string
		stream []byte
		want   *CloseError
	}{
		{"unmasked text", testFrame{fin: true, op: ws.OpText, payload: []byte("hi"), unmasked: true}.encode(), errUnmasked},
		{"unmasked close", testFrame{fin: true, op: ws.OpClose, unmasked: true}.encode(), errUnmasked},
		{"rsv1", testFrame{fin: true, rsv: 0x40, op: ws.OpText, payload: []byte("hi")}.encode(), errReservedBits},
		{"rsv2", testFrame{fin: true, rsv: 0x20, op: ws.OpBinary}.encode(), errReservedBits},
		{"rsv3", testFrame{fin: true, rsv: 0x10, op: ws.OpPing}.encode(), errReservedBits},
		{"ping 126 bytes", clientFrame(true, ws.OpPing, make([]byte, 126)), errControlTooLong},
		{"close 126 bytes", clientFrame(true, ws.OpClose, closePayload(1000, string(textPayload(124)))), errControlTooLong},
		{"pong 64-bit length", testFrame{fin: true, op: ws.OpPong, lenForm: 64}.encode(), errControlTooLong},
		{"fragmented ping", clientFrame(false, ws.OpPing, []byte("x")), errControlFragment},
		{"fragmented close", clientFrame(false, ws.OpClose, nil), errControlFragment},
		{"continuation without start", clientFrame(true, ws.OpContinuation, []byte("x")), errNoContinuation},
		{"continuation after a whole message", cat(clientText("a"), clientFrame(true, ws.OpContinuation, []byte("x"))), errNoContinuation},
		{"text inside fragmented text", cat(ok, clientText("x")), errNotContinuation},
		{"binary inside fragmented text", cat(ok, clientPing(""), clientBinary(nil)), errNotContinuation},
		{"non-final text inside fragmented binary", cat(clientFrame(false, ws.OpBinary, nil), clientFrame(false, ws.OpText, nil)), errNotContinuation},
		{"invalid UTF-8", clientText("ab\xffcd"), errTextUTF8},
		{"surrogate", clientText("\xed\xa0\x80"), errTextUTF8},
		{"overlong", clientText("\xc0\xaf"), errTextUTF8},
		{"truncated at the end", clientText("ab\xe2\x82"), errTextUTF8},
		{"truncated at the end of fragments", cat(ok, clientFrame(true, ws.OpContinuation, []byte("\xf0\x9f"))), errTextUTF8},
		{"invalid across fragments", cat(clientFrame(false, ws.OpText, []byte("\xe2")), clientFrame(true, ws.OpContinuation, []byte("\x28\xa1"))), errTextUTF8},
		{"invalid in a first fragment, rest never sent", clientFrame(false, ws.OpText, []byte("ok\xff")), errTextUTF8},
		{"invalid early in a frame, rest never sent", clientText("ok\xc3\x28" + string(textPayload(200)))[:12], errTextUTF8},
		{"close 1 byte", clientClose([]byte{3}), errCloseOneByte},
		{"close reason not UTF-8", clientClose(closePayload(1000, "\xff")), errCloseReasonUTF8},
		{"close reason truncated", clientClose(closePayload(1000, "ok\xe2\x82")), errCloseReasonUTF8},
		{"64-bit length MSB", testFrame{fin: true, op: ws.OpBinary, declared: lenPtr(1 << 63)}.encode(), errLengthMSB},
		{"64-bit length all ones", testFrame{fin: true, op: ws.OpBinary, declared: lenPtr(1<<64 - 1)}.encode(), errLengthMSB},
		{"error after good messages", cat(clientText("a"), clientPing("b"), testFrame{fin: true, op: ws.OpText, unmasked: true}.encode()), errUnmasked},
	}
	for _, code := range []uint16{0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, struct {
			name   string
			stream []byte
			want   *CloseError
		}{fmt.Sprintf("close code %d", code), clientClose(closePayload(code, "")), errCloseCode})
	}
	for _, tc := range append(cases, reserved...) {
		t.Run(tc.name, func(t *testing.T) {
			res := requireSameAtEverySplit(t, testLimit, tc.stream)
			require.Equal(t, tc.want, res.Err)
			wantCode := ws.StatusProtocolError
			switch tc.want {
			case errTextUTF8, errCloseReasonUTF8:
				wantCode = ws.StatusInvalidFramePayloadData
			}
			assert.Equal(t, wantCode, res.Code)
			requireMatchesRef(t, tc.stream, testLimit, res, "reference")
		})
	}
}

func TestReaderValidCloseFrames(t *testing.T) {
	var stream [][]byte
	for _, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		stream = append(stream, clientClose(closePayload(code, "")))
	}
	stream = append(stream,
		clientClose(nil),
		clientClose(closePayload(1000, "normal ✓ closure")),
		clientClose(closePayload(1000, string(textPayload(123)))))
	for i, f := range stream {
		res := requireSameAtEverySplit(t, testLimit, f)
		require.NoError(t, res.Err, "frame %d", i)
		require.Len(t, res.Msgs, 1)
		assert.Equal(t, ws.OpClose, res.Msgs[0].Op)
	}
}

// TestReaderFailsEarly checks that a violation visible in the first bytes
// of a frame fails the connection without waiting for the rest.
func TestReaderFailsEarly(t *testing.T) {
	for _, tc := range []struct {
		name  string
		bytes []byte
		want  *CloseError
	}{
		{"unmasked", []byte{0x81, 0x05}, errUnmasked},
		{"rsv", []byte{0xc1, 0x85}, errReservedBits},
		{"reserved opcode", []byte{0x83, 0x80}, errReservedOpCode},
		{"control 126", []byte{0x89, 0x80 | 126}, errControlTooLong},
		{"control fragment", []byte{0x09, 0x80}, errControlFragment},
		{"continuation without start", []byte{0x80, 0x80}, errNoContinuation},
		{"64-bit MSB, header only", testFrame{fin: true, op: ws.OpBinary, declared: lenPtr(1 << 63)}.encode(), errLengthMSB},
		{"too big, header only", testFrame{fin: true, op: ws.OpBinary, declared: lenPtr(testLimit + 1)}.encode(), errMessageTooBigHdr},
		{"bad UTF-8, first bytes of payload", clientText("\xff" + string(textPayload(100)))[:9], errTextUTF8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Reader
			r.Reset(testLimit)
			_, _, ok, err := r.Next(bytes.Clone(tc.bytes))
			assert.False(t, ok)
			assert.Equal(t, tc.want, err)
		})
	}
}

func TestReaderReset(t *testing.T) {
	var r Reader
	r.Reset(testLimit)
	_, _, _, err := r.Next(clientFrame(false, ws.OpText, []byte("half")))
	require.NoError(t, err)
	require.False(t, r.Idle())
	r.Reset(10)
	assert.True(t, r.Idle())
	assert.Nil(t, r.asm)
	m, _, ok, err := r.Next(clientText("fresh"))
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, "fresh", string(m.Payload))
	_, _, _, err = r.Next(clientText("eleven byte"))
	assert.Equal(t, errMessageTooBigHdr, err)
}

func TestReaderRandomStreams(t *testing.T) {
	// Random valid and invalid frame sequences, random reads, against the
	// reference model.
	rng := rand.New(rand.NewPCG(9, 9))
	const limit = 4096
	for i := range 2000 {
		stream := randomStream(rng, 1+rng.IntN(12), i%3 == 0)
		want := feedWhole(t, limit, stream)
		requireMatchesRef(t, stream, limit, want, "whole")
		got := feedSizes(t, limit, stream, 1)
		requireSameResult(t, want, got, "stream %d one byte at a time", i)
		var sizes []int
		for range 20 {
			sizes = append(sizes, 1+rng.IntN(64))
		}
		got = feedSizes(t, limit, stream, sizes...)
		requireSameResult(t, want, got, "stream %d in reads %v", i, sizes)
	}
}

// randomStream returns n frames, mostly valid; with corrupt, a few bytes
// are changed afterwards.
func randomStream(rng *rand.Rand, n int, corrupt bool) []byte {
	var frames [][]byte
	open := false
	for range n {
		var f testFrame
		switch k := rng.IntN(10); {
		case k < 2:
			f = testFrame{fin: true, op: ws.OpPing, payload: textPayload(rng.IntN(126))}
		case k < 3:
			f = testFrame{fin: true, op: ws.OpClose, payload: closePayload(uint16(990+rng.IntN(30)), string(textPayload(rng.IntN(20))))}
		case open:
			f = testFrame{fin: rng.IntN(2) == 0, op: ws.OpContinuation, payload: textPayload(rng.IntN(300))}
		default:
			op := ws.OpText
			if rng.IntN(2) == 0 {
				op = ws.OpBinary
			}
			f = testFrame{fin: rng.IntN(2) == 0, op: op, payload: textPayload(rng.IntN(300))}
		}
		if !f.op.IsControl() {
			open = !f.fin
		}
		f.lenForm = []int{0, 0, 0, 16, 64}[rng.IntN(5)]
		if f.op.IsControl() && f.lenForm != 0 {
			f.lenForm = 0
		}
		f.mask = [4]byte{byte(rng.IntN(256)), 1, byte(rng.IntN(256)), 2}
		frames = append(frames, f.encode())
	}
	stream := cat(frames...)
	if corrupt && len(stream) > 0 {
		for range 1 + rng.IntN(3) {
			stream[rng.IntN(len(stream))] ^= byte(1 << rng.IntN(8))
		}
	}
	return stream
}
