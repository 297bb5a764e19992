package wsconn_test

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/gobwas/ws"
	gorilla "github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/wsconn"
)

// benchMask is the mask of the benchmarks' client frames.
var benchMask = [4]byte{0x11, 0x22, 0x33, 0x44}

// maskedFrame returns a final client frame of opcode op carrying payload,
// masked with benchMask.
func maskedFrame(op ws.OpCode, payload []byte) []byte {
	p := []byte{0x80 | byte(op)}
	switch n := len(payload); {
	case n <= 125:
		p = append(p, 0x80|byte(n))
	case n <= 0xffff:
		p = binary.BigEndian.AppendUint16(append(p, 0x80|126), uint16(n))
	default:
		p = binary.BigEndian.AppendUint64(append(p, 0x80|127), uint64(n))
	}
	p = append(p, benchMask[:]...)
	start := len(p)
	p = append(p, payload...)
	ws.Cipher(p[start:], benchMask, 0)
	return p
}

var payload64 = []byte(strings.Repeat("0123456789abcdef", 4))

// BenchmarkParseFrame parses 64-byte masked text frames, each whole in the
// read buffer. Next unmasks in place, so the buffer holds 4096 frames back
// to back and is restored from a pristine copy, outside the timer, each time
// they are used up.
func BenchmarkParseFrame(b *testing.B) {
	const frames = 4096
	frame := maskedFrame(ws.OpText, payload64)
	pristine := bytes.Repeat(frame, frames)
	buf := bytes.Clone(pristine)
	var r wsconn.Reader
	r.Reset(1 << 20)
	p := buf
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if len(p) == 0 {
			b.StopTimer()
			copy(buf, pristine)
			p = buf
			b.StartTimer()
		}
		m, n, ok, err := r.Next(p)
		if err != nil || !ok || n != len(frame) || len(m.Payload) != len(payload64) {
			b.Fatalf("Next: %v ok %v n %d len %d", err, ok, n, len(m.Payload))
		}
		p = p[n:]
	}
}

// BenchmarkParseFrameSplit parses the same frame arriving in two reads, the
// way Conn.turn hands them over: the pending header bytes taken to the front
// of the read buffer, then the new bytes. Each op copies the 70 frame bytes
// into the buffer (the "reads"), which is part of the measured cost.
//
// "header" splits inside the header: the payload then arrives whole and is
// parsed in place. "payload" splits in the middle of the payload: the message
// is assembled in a buffer that the Reader allocates and drops again (an idle
// connection holds no buffer), which shows in allocs/op.
func BenchmarkParseFrameSplit(b *testing.B) {
	frame := maskedFrame(ws.OpText, payload64)
	for _, bc := range []struct {
		name string
		at   int
	}{
		{"header", 3},
		{"payload", 6 + len(payload64)/2},
	} {
		b.Run(bc.name, func(b *testing.B) {
			buf := make([]byte, 64<<10)
			var r wsconn.Reader
			r.Reset(1 << 20)
			first, second := frame[:bc.at], frame[bc.at:]
			b.SetBytes(int64(len(frame)))
			b.ReportAllocs()
			for range b.N {
				n1 := copy(buf, first)
				_, _, ok, err := r.Next(buf[:n1])
				if err != nil || ok {
					b.Fatalf("first read: %v ok %v", err, ok)
				}
				off := r.TakePending(buf)
				n2 := copy(buf[off:], second)
				m, _, ok, err := r.Next(buf[:off+n2])
				if err != nil || !ok || len(m.Payload) != len(payload64) {
					b.Fatalf("second read: %v ok %v len %d", err, ok, len(m.Payload))
				}
			}
		})
	}
}

// BenchmarkEchoRoundTrip sends a 64-byte text message to the real server's
// echo endpoint over loopback and waits for the echo: ns/op is one round
// trip. "gorilla" uses a gorilla/websocket client (its allocations count in
// allocs/op); "raw" writes a pre-built masked frame and reads the 66-byte
// answer into a fixed buffer, so the client costs next to nothing.
func BenchmarkEchoRoundTrip(b *testing.B) {
	_, addr := startServer(b, wsconn.Config{})

	b.Run("gorilla", func(b *testing.B) {
		c, _, err := gorilla.DefaultDialer.Dial("ws://"+addr+"/echo", nil)
		require.NoError(b, err)
		defer c.Close()
		b.SetBytes(int64(len(payload64)))
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if err := c.WriteMessage(gorilla.TextMessage, payload64); err != nil {
				b.Fatal(err)
			}
			typ, p, err := c.ReadMessage()
			if err != nil || typ != gorilla.TextMessage || len(p) != len(payload64) {
				b.Fatalf("read: %v type %d len %d", err, typ, len(p))
			}
		}
	})

	b.Run("raw", func(b *testing.B) {
		c := rawDial(b, addr, "/echo")
		defer c.Close()
		frame := maskedFrame(ws.OpText, payload64)
		want := append([]byte{0x81, byte(len(payload64))}, payload64...)
		got := make([]byte, len(want))
		b.SetBytes(int64(len(payload64)))
		b.ReportAllocs()
		b.ResetTimer()
		for range b.N {
			if _, err := c.Write(frame); err != nil {
				b.Fatal(err)
			}
			if _, err := io.ReadFull(c, got); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		require.Equal(b, want, got)
	})
}

// rawDial opens a WebSocket connection with a hand-written handshake and
// returns the bare TCP connection.
func rawDial(tb testing.TB, addr, path string) net.Conn {
	tb.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(tb, err)
	_, err = io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+addr+
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	require.NoError(tb, err)
	// Read the response byte by byte, so no frame byte is buffered away.
	br := bufio.NewReaderSize(oneByteReader{c}, 16)
	resp, err := http.ReadResponse(br, nil)
	require.NoError(tb, err)
	require.Equal(tb, http.StatusSwitchingProtocols, resp.StatusCode)
	require.Zero(tb, br.Buffered())
	return c
}

type oneByteReader struct{ r io.Reader }

func (o oneByteReader) Read(p []byte) (int, error) { return o.r.Read(p[:min(len(p), 1)]) }

// BenchmarkUTF8Valid validates 4 KiB of text with the streaming validator,
// beside unicode/utf8.Valid for scale.
func BenchmarkUTF8Valid(b *testing.B) {
	ascii := []byte(strings.Repeat("The quick brown fox jumps over the lazy dog. ", 100))[:4096]
	mixed := []byte(strings.Repeat("Grüße, 世界! Ünïcødé ✓ 🙂 plain ascii words here; ", 100))
	for !utf8.Valid(mixed[:4096]) {
		mixed = mixed[1:] // start on a character boundary that also ends one at 4096
	}
	mixed = mixed[:4096]
	for _, bc := range []struct {
		name string
		p    []byte
	}{{"ascii-4KiB", ascii}, {"mixed-4KiB", mixed}} {
		b.Run(bc.name, func(b *testing.B) {
			b.SetBytes(int64(len(bc.p)))
			b.ReportAllocs()
			for range b.N {
				if !wsconn.UTF8Valid(bc.p) {
					b.Fatal("invalid")
				}
			}
		})
		b.Run(bc.name+"/stdlib", func(b *testing.B) {
			b.SetBytes(int64(len(bc.p)))
			for range b.N {
				if !utf8.Valid(bc.p) {
					b.Fatal("invalid")
				}
			}
		})
	}
}
