package wsconn

import (
	"bufio"
	"bytes"
	"compress/flate"
	"math"
	"net/http"
	"runtime"
	"strings"
	"testing"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// deflateMessage compresses p as a permessage-deflate sender does: one
// flushed deflate stream without its final 0x00 0x00 0xff 0xff.
func deflateMessage(tb testing.TB, p []byte) []byte {
	tb.Helper()
	var b bytes.Buffer
	w, err := flate.NewWriter(&b, flate.BestSpeed)
	require.NoError(tb, err)
	_, err = w.Write(p)
	require.NoError(tb, err)
	require.NoError(tb, w.Flush())
	out := b.Bytes()
	require.True(tb, bytes.HasSuffix(out, []byte{0, 0, 0xff, 0xff}))
	return out[:len(out)-4]
}

func TestInflate(t *testing.T) {
	var s inflaters
	for _, msg := range []string{"", "a", `{"topic":"news","data":"hello"}`, strings.Repeat("fanout ", 20000)} {
		got, err := s.inflate(deflateMessage(t, []byte(msg)), 1<<20, true)
		require.NoError(t, err, "%.20q", msg)
		assert.Equal(t, msg, string(got))
	}
	// Exactly at the limit is allowed; one byte over is 1009.
	msg := bytes.Repeat([]byte{'x'}, 1000)
	got, err := s.inflate(deflateMessage(t, msg), 1000, false)
	require.NoError(t, err)
	assert.Equal(t, msg, got)
	_, err = s.inflate(deflateMessage(t, msg), 999, false)
	assert.Equal(t, errInflatedTooBig, err)

	// A limit of MaxInt64 means none: no overflow in the buffer's size.
	got, err = s.inflate(deflateMessage(t, msg), math.MaxInt64, false)
	require.NoError(t, err)
	assert.Equal(t, msg, got)

	_, err = s.inflate([]byte{0xff, 0xff, 0xff}, 1<<20, false)
	assert.Equal(t, errInflate, err, "not deflate")
	_, err = s.inflate(deflateMessage(t, []byte("caf\xc3")), 1<<20, true)
	assert.Equal(t, errTextUTF8, err)
	got, err = s.inflate(deflateMessage(t, []byte("caf\xc3")), 1<<20, false)
	require.NoError(t, err, "binary is not checked for UTF-8")
	assert.Equal(t, "caf\xc3", string(got))
}

// A zip bomb fails with 1009 once the limit is passed: what inflating it
// allocates is bounded by the limit (and the pooled reader), not by what
// it would inflate to.
func TestInflateBomb(t *testing.T) {
	bomb := deflateMessage(t, make([]byte, 64<<20)) // 64 MiB of zeros, about 64 KiB
	t.Logf("bomb: %d bytes inflating to %d", len(bomb), 64<<20)
	var s inflaters
	const limit = 256 << 10
	_, err := s.inflate(bomb, limit, false) // warm the pool
	require.Equal(t, errInflatedTooBig, err)

	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err = s.inflate(bomb, limit, false)
	runtime.ReadMemStats(&after)
	require.Equal(t, errInflatedTooBig, err)
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d bytes for a limit of %d", allocated, limit)
	// The output buffer doubles up to limit+1: under 2 × limit in all.
	assert.Less(t, allocated, uint64(2*limit+64<<10))
}

func TestReaderCompressedBits(t *testing.T) {
	frame := func(b0 byte, payload []byte) []byte {
		return append([]byte{b0, 0x80 | byte(len(payload)), 0, 0, 0, 0}, payload...)
	}
	const fin, rsv1, rsv2 = 0x80, 0x40, 0x20
	text := byte(ws.OpText)
	compressed := deflateMessage(t, []byte("hello"))
	for _, tc := range []struct {
		name    string
		deflate bool
		frames  [][]byte
		err     error // nil: the message comes out, compressed
	}{
		{"RSV1 without the extension", false, [][]byte{frame(fin|rsv1|text, compressed)}, errReservedBits},
		{"RSV1 with it", true, [][]byte{frame(fin|rsv1|text, compressed)}, nil},
		{"RSV2 with it", true, [][]byte{frame(fin|rsv2|text, compressed)}, errReservedBits},
		{"RSV1 on a continuation", true, [][]byte{frame(rsv1|text, compressed[:2]), frame(fin|rsv1, compressed[2:])}, errCompressedBit},
		{"RSV1 on a ping", true, [][]byte{frame(fin|rsv1|byte(ws.OpPing), nil)}, errCompressedBit},
		{"fragmented", true, [][]byte{frame(rsv1|text, compressed[:2]), frame(byte(ws.OpPing)|fin, nil), frame(fin, compressed[2:])}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r Reader
			r.Reset(1 << 20)
			r.SetCompression(tc.deflate)
			var got []Message
			var err error
			for _, f := range tc.frames {
				for p := f; len(p) > 0 && err == nil; {
					var m Message
					var n int
					var ok bool
					m, n, ok, err = r.Next(p)
					p = p[n:]
					if ok {
						m.Payload = bytes.Clone(m.Payload)
						got = append(got, m)
					}
				}
			}
			if tc.err != nil {
				assert.Equal(t, tc.err, err)
				return
			}
			require.NoError(t, err)
			last := got[len(got)-1]
			assert.True(t, last.Compressed)
			assert.Equal(t, ws.OpText, last.OpCode)
			assert.Equal(t, compressed, last.Payload)
			// The next message is plain unless it says otherwise.
			m, _, ok, err := r.Next(frame(fin|text, []byte("plain")))
			require.NoError(t, err)
			require.True(t, ok)
			assert.False(t, m.Compressed)
		})
	}
}

func TestNegotiateDeflate(t *testing.T) {
	for _, tc := range []struct {
		offer, want string // want "": not accepted
		disabled    bool
	}{
		{"permessage-deflate", "permessage-deflate; server_no_context_takeover; client_no_context_takeover", false},
		{"permessage-deflate; client_max_window_bits", "permessage-deflate; server_no_context_takeover; client_no_context_takeover", false},
		{"permessage-deflate; server_max_window_bits=10", "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=10", false},
		{"permessage-deflate; client_no_context_takeover; server_no_context_takeover", "permessage-deflate; server_no_context_takeover; client_no_context_takeover", false},
		// A malformed offer is declined; the next one is taken.
		{"permessage-deflate; foo=1, permessage-deflate; server_max_window_bits=20, permessage-deflate", "permessage-deflate; server_no_context_takeover; client_no_context_takeover", false},
		{"permessage-deflate; foo", "", false},
		{"permessage-deflate; server_max_window_bits", "", false},
		{"permessage-deflate; server_max_window_bits=08", "", false},
		{"permessage-deflate; client_max_window_bits=16", "", false},
		{"permessage-deflate; server_no_context_takeover; server_no_context_takeover", "", false},
		{"permessage-deflate; server_max_window_bits=15; client_max_window_bits=9", "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=15", false},
		{"x-webkit-deflate-frame, permessage-deflate; server_max_window_bits=8", "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=8", false},
		{"x-webkit-deflate-frame", "", false},
		{"permessage-deflate", "", true},
	} {
		s := newUpgradeServer(t)
		if tc.disabled {
			s.cfg.DisableCompression = true
		}
		head := withHeaders("GET /echo HTTP/1.1", "Sec-WebSocket-Extensions: "+tc.offer)
		c := &Conn{srv: s}
		_, resp, err := s.upgrade(c, head)
		require.NoError(t, err, tc.offer)
		r, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(resp)), nil)
		require.NoError(t, err)
		assert.Equal(t, tc.want, r.Header.Get("Sec-WebSocket-Extensions"), "offer %q", tc.offer)
	}
}

// FuzzInflate feeds arbitrary bytes to the inflater as a compressed
// message: it must not panic, must not give more than the limit, and fails
// only with the connection's close errors.
func FuzzInflate(f *testing.F) {
	f.Add(deflateMessage(f, []byte(`{"topic":"a","data":"b"}`)))
	f.Add(deflateMessage(f, make([]byte, 10000)))
	f.Add([]byte{})
	f.Add([]byte{0x00})
	f.Add([]byte{0x01, 0x00, 0x00, 0xff, 0xff})
	var s inflaters
	f.Fuzz(func(t *testing.T, data []byte) {
		const limit = 4096
		out, err := s.inflate(data, limit, true)
		switch err {
		case nil:
			assert.LessOrEqual(t, len(out), limit)
		case errInflate, errInflatedTooBig, errTextUTF8:
		default:
			t.Fatalf("error %v", err)
		}
	})
}

// BenchmarkUpgradeOffer measures the upgrade path with and without a
// permessage-deflate offer: what a handshake allocates is garbage that
// sets the heap's size during a storm of connections.
func BenchmarkUpgradeOffer(b *testing.B) {
	for _, offer := range []string{"", "permessage-deflate; client_max_window_bits"} {
		name := "plain"
		extra := []string(nil)
		if offer != "" {
			name = "offer"
			extra = []string{"Sec-WebSocket-Extensions: " + offer}
		}
		b.Run(name, func(b *testing.B) {
			s := newUpgradeServer(b)
			head := withHeaders("GET /echo HTTP/1.1", extra...)
			c := &Conn{srv: s}
			b.ReportAllocs()
			for b.Loop() {
				up := s.runUpgrade(c, head)
				if up.err != nil {
					b.Fatal(up.err)
				}
				s.upgraders.Put(up)
			}
		})
	}
}

// Offers over several header lines are taken in order.
func TestAcceptDeflateLines(t *testing.T) {
	head := withHeaders("GET /echo HTTP/1.1",
		"Sec-WebSocket-Extensions: permessage-deflate; bogus",
		"Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=12")
	bits, ok := acceptDeflate(head)
	assert.True(t, ok)
	assert.Equal(t, uint8(12), bits)
	_, ok = acceptDeflate(withHeaders("GET /echo HTTP/1.1", "Sec-WebSocket-Extensions: permessage-deflate; bogus"))
	assert.False(t, ok)
	_, ok = acceptDeflate(withHeaders("GET /echo HTTP/1.1"))
	assert.False(t, ok)
}

func TestCompressFrame(t *testing.T) {
	d := NewDeflater(64)
	var s inflaters
	for _, n := range []int{64, 125, 126, 1000, 0xffff, 0x10000, 200 << 10} {
		payload := []byte(strings.Repeat(`{"topic":"prices","seq":1,"data":{"bid":101.5}}`, n/47+1)[:n])
		plain := NewFrame(ws.OpText, payload)
		c := d.CompressFrame(plain)
		require.NotNil(t, c, "%d bytes", n)
		assert.Less(t, len(c), len(plain))
		assert.Equal(t, NewFrame(ws.OpText, payload), plain, "the plain frame is left as it was")

		// A client's reader sees one final compressed text frame.
		h, err := ws.ReadHeader(bytes.NewReader(c))
		require.NoError(t, err)
		assert.True(t, h.Fin)
		assert.Equal(t, ws.OpText, h.OpCode)
		assert.Equal(t, byte(0x4), h.Rsv, "RSV1")
		body := c[len(c)-int(h.Length):]
		got, err := s.inflate(body, 1<<20, true)
		require.NoError(t, err)
		assert.Equal(t, payload, got, "%d bytes", n)
	}

	assert.Nil(t, d.CompressFrame(NewFrame(ws.OpText, []byte(strings.Repeat("a", 63)))), "under the minimum")
	assert.Nil(t, d.CompressFrame(NewFrame(ws.OpBinary, randomPayload(4096))), "does not shrink")
	assert.Nil(t, d.CompressFrame(NewFrame(ws.OpPing, bytes.Repeat([]byte("a"), 100))), "a control frame")
	assert.Nil(t, d.CompressFrame(AppendFrame(nil, ws.OpText, nil)[:1]), "not a frame")
}

func randomPayload(n int) []byte {
	p := make([]byte, n)
	for i := range p {
		p[i] = byte(i*7919+i*i*31+i>>3) ^ byte(i>>8*131)
	}
	return p
}

// BenchmarkCompressFrame compresses a 1 KiB JSON broadcast, as a hub does
// once per message for every subscriber that negotiated compression.
func BenchmarkCompressFrame(b *testing.B) {
	payload := []byte(strings.Repeat(`{"id":12345,"name":"fanout","price":101.25,"tags":["a","b"]}`, 20)[:1024])
	frame := NewFrame(ws.OpText, payload)
	d := NewDeflater(256)
	c := d.CompressFrame(frame)
	b.ReportMetric(float64(len(c))/float64(len(frame)), "ratio")
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for b.Loop() {
		d.CompressFrame(frame)
	}
}

// FuzzReaderCompressed feeds arbitrary bytes to Readers that negotiated
// compression, whole, in reads whose sizes come from cuts, and a byte at a
// time: they must not panic, must keep the reader's invariants (see feed)
// and must give the same messages and error however the stream is split;
// each compressed message inflates within the limit or fails with a close
// error.
func FuzzReaderCompressed(f *testing.F) {
	frame := func(b0 byte, payload []byte) []byte {
		h := AppendFrameHeader(nil, ws.OpCode(b0&0x0f), b0&0x80 != 0, len(payload))
		h[0] = b0
		h[1] |= 0x80 // masked, with a zero key
		return append(append(h, 0, 0, 0, 0), payload...)
	}
	c := deflateMessage(f, []byte(`{"type":"subscribe","topic":"a"}`))
	f.Add(frame(0xc1, c), []byte{3}, uint16(1024))
	f.Add(append(frame(0x41, c[:3]), append(frame(0x89, nil), frame(0x80, c[3:])...)...), []byte{1, 7}, uint16(64))
	f.Add(append(frame(0xc2, deflateMessage(f, make([]byte, 5000))), frame(0x81, []byte("plain"))...), []byte{}, uint16(100))
	f.Add(frame(0xc1|0x20, c), []byte{0}, uint16(1024))
	var s inflaters
	f.Fuzz(func(t *testing.T, stream, cuts []byte, limit uint16) {
		lim := int64(limit)
		newReader := func() *Reader {
			var r Reader
			r.Reset(lim)
			r.SetCompression(true)
			return &r
		}
		whole := feed(t, newReader(), stream, func() int { return len(stream) })
		i := 0
		chunked := feed(t, newReader(), stream, func() int {
			if len(cuts) == 0 {
				return 1
			}
			n := int(cuts[i%len(cuts)]) + 1
			i++
			return n
		})
		requireSameResult(t, whole, chunked, "reads of sizes from % x", cuts)
		requireSameResult(t, whole, feed(t, newReader(), stream, func() int { return 1 }), "one byte at a time")
		for _, m := range whole.Msgs {
			if m.Op != ws.OpText && m.Op != ws.OpBinary {
				continue
			}
			out, err := s.inflate(m.Payload, lim, m.Op == ws.OpText)
			switch err {
			case nil:
				assert.LessOrEqual(t, int64(len(out)), lim)
			case errInflate, errInflatedTooBig, errTextUTF8:
			default:
				t.Fatalf("inflate: %v", err)
			}
		}
	})
}

// An upgrade that offers permessage-deflate allocates no more than one that
// does not: at many thousands of handshakes a slice of options per upgrade
// (gobwas/ws's Negotiate hook allocated 448 bytes) set the heap's size, and
// compressed connections cost 617-642 B of RSS against 516-538 B plain.
func TestUpgradeOfferAllocatesNoMore(t *testing.T) {
	// Counted as a mean over many upgrades, not rounded down per run as
	// testing.AllocsPerRun does: under -race sync.Pool drops a quarter of
	// its puts at random (here and inside gobwas/ws), so a rounded count
	// came out 4 against 3, or 6 against 5, from run to run. Both kinds of
	// upgrade pay that noise alike; the slice of options this guards
	// against costs one whole allocation per upgrade.
	s := newUpgradeServer(t)
	c := &Conn{srv: s}
	up := s.newUpgrader()
	allocs := func(extra ...string) float64 {
		head := withHeaders("GET /echo HTTP/1.1", extra...)
		return mallocsPerRun(2000, func() {
			up.run(c, head)
			if up.err != nil {
				t.Fatal(up.err)
			}
		})
	}
	plain := allocs()
	offer := allocs("Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits")
	t.Logf("allocations per upgrade: %.2f plain, %.2f with an offer", plain, offer)
	assert.Less(t, offer, plain+0.5, "allocations per upgrade with an offer, and without")
}

// mallocsPerRun is the mean number of heap allocations of f over n runs,
// after one run to warm up, unrounded.
func mallocsPerRun(n int, f func()) float64 {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for range n {
		f()
	}
	runtime.ReadMemStats(&after)
	return float64(after.Mallocs-before.Mallocs) / float64(n)
}
