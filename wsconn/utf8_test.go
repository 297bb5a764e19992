package wsconn

import (
	"math/rand/v2"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// UTF8Valid reports whether p is complete, valid UTF-8 according to the
// streaming validator. It exposes utf8State to the external benchmarks in
// bench_test.go.
func UTF8Valid(p []byte) bool { return utf8Accept.validUTF8(p) == utf8Accept }

// refFirstReject is the reference for the validator's fail-fast rule, built
// on unicode/utf8 alone: it returns the index of the first byte of p at which
// the prefix p[:i+1] can no longer be extended to valid UTF-8, or -1 when p
// is valid or a valid prefix of a longer valid string.
func refFirstReject(p []byte) int {
	i := 0
	for i < len(p) {
		// Grow the sequence that starts at i one byte at a time until it is
		// a whole valid character or an invalid one.
		for j := i; ; j++ {
			if j == len(p) {
				return -1 // a valid sequence, cut short by the end of p
			}
			q := p[i : j+1]
			if !utf8.FullRune(q) {
				continue // still a valid prefix of some character
			}
			r, size := utf8.DecodeRune(q)
			if r == utf8.RuneError && size == 1 {
				return j // q cannot start any valid character
			}
			// FullRune treats a bad continuation byte as the end of a
			// (bad) character, so a valid decode is exactly q.
			i = j + 1
			break
		}
	}
	return -1
}

// dfaRun feeds p to the validator one byte at a time and returns the final
// state and the index of the byte at which it entered utf8Reject (-1 if it
// never did).
func dfaRun(p []byte) (utf8State, int) {
	s := utf8Accept
	for i := range p {
		s = s.validUTF8(p[i : i+1])
		if s == utf8Reject {
			return s, i
		}
	}
	return s, -1
}

// checkUTF8 checks every property of the validator on p: whole-buffer and
// byte-at-a-time runs agree with unicode/utf8 and with refFirstReject, and
// so does every split of p in two chunks.
func checkUTF8(t *testing.T, p []byte) {
	t.Helper()
	want := utf8.Valid(p)
	wantReject := refFirstReject(p)

	whole := utf8Accept.validUTF8(p)
	if (whole == utf8Accept) != want {
		t.Fatalf("% x: validUTF8 = %d, utf8.Valid = %v", p, whole, want)
	}
	if (whole == utf8Reject) != (wantReject >= 0) {
		t.Fatalf("% x: validUTF8 = %d, reference first reject at %d", p, whole, wantReject)
	}
	s, at := dfaRun(p)
	if s != whole || at != wantReject {
		t.Fatalf("% x: byte-wise state %d rejected at %d; whole-buffer state %d, reference reject at %d", p, s, at, whole, wantReject)
	}
	// Rejection is sticky and happens exactly at wantReject: the prefix
	// just before that byte is not rejected.
	if wantReject >= 0 {
		if st := utf8Accept.validUTF8(p[:wantReject]); st == utf8Reject {
			t.Fatalf("% x: prefix %d bytes already rejected", p, wantReject)
		}
		if st := utf8Accept.validUTF8(p[:wantReject+1]); st != utf8Reject {
			t.Fatalf("% x: prefix %d bytes not rejected", p, wantReject+1)
		}
	}
	for k := 0; k <= len(p); k++ {
		s1 := utf8Accept.validUTF8(p[:k])
		s2 := s1.validUTF8(p[k:])
		if s2 != whole {
			t.Fatalf("% x split at %d: state %d, whole %d", p, k, s2, whole)
		}
	}
}

func TestRefFirstReject(t *testing.T) {
	// The reference itself, on textbook cases.
	for _, tc := range []struct {
		in   string
		want int
	}{
		{"", -1},
		{"abc", -1},
		{"\xc3\xa9", -1},
		{"\xc3", -1},
		{"\xe2\x82", -1},
		{"\xf0\x9f\x98", -1},
		{"\x80", 0},
		{"\xc0\x80", 0},
		{"\xc1\xbf", 0},
		{"\xf5", 0},
		{"\xff", 0},
		{"\xc2\x41", 1},
		{"\xe0\x80", 1},     // overlong 3-byte
		{"\xe0\x9f\xbf", 1}, // overlong 3-byte
		{"\xed\xa0\x80", 1}, // surrogate U+D800
		{"\xed\xbf\xbf", 1}, // surrogate U+DFFF
		{"\xf0\x8f\xbf\xbf", 1},
		{"\xf4\x90\x80\x80", 1}, // U+110000
		{"\xe1\x80\x41", 2},
		{"\xf1\x80\x80\x41", 3},
		{"a\xc3\xa9\xc3", -1},
		{"a\xc3\xa9\xc3(", 4},
	} {
		assert.Equal(t, tc.want, refFirstReject([]byte(tc.in)), "% x", tc.in)
	}
}

func TestUTF8ZeroValueAccepts(t *testing.T) {
	var s utf8State
	assert.Equal(t, utf8Accept, s)
	assert.Equal(t, utf8Accept, s.validUTF8(nil))
}

func TestUTF8RejectIsSticky(t *testing.T) {
	for b := range 256 {
		assert.Equal(t, utf8Reject, utf8Reject.validUTF8([]byte{byte(b)}), "byte %#x", b)
	}
	assert.Equal(t, utf8Reject, utf8Reject.validUTF8(nil))
	assert.Equal(t, utf8Reject, utf8Reject.validUTF8([]byte("plain ASCII, well over eight bytes")))
}

func TestUTF8KnownVectors(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
	}{
		{"boundaries 1", "\x00\x7f"},
		{"boundaries 2", "\xc2\x80\xdf\xbf"},
		{"boundaries 3", "\xe0\xa0\x80\xef\xbf\xbf"},
		{"boundaries 4", "\xf0\x90\x80\x80\xf4\x8f\xbf\xbf"},
		{"before surrogates", "\xed\x9f\xbf"},
		{"after surrogates", "\xee\x80\x80"},
		{"surrogate D800", "\xed\xa0\x80"},
		{"surrogate DBFF", "\xed\xaf\xbf"},
		{"surrogate DC00", "\xed\xb0\x80"},
		{"surrogate DFFF", "\xed\xbf\xbf"},
		{"surrogate pair", "\xed\xa0\xbd\xed\xb8\x80"},
		{"overlong /", "\xc0\xaf"},
		{"overlong / 3", "\xe0\x80\xaf"},
		{"overlong / 4", "\xf0\x80\x80\xaf"},
		{"max overlong 2", "\xc1\xbf"},
		{"max overlong 3", "\xe0\x9f\xbf"},
		{"max overlong 4", "\xf0\x8f\xbf\xbf"},
		{"U+110000", "\xf4\x90\x80\x80"},
		{"U+13FFFF", "\xf4\xbf\xbf\xbf"},
		{"F5 lead", "\xf5\x80\x80\x80"},
		{"5-byte form", "\xf8\x88\x80\x80\x80"},
		{"6-byte form", "\xfc\x84\x80\x80\x80\x80"},
		{"FE FF", "\xfe\xff"},
		{"lone continuation", "\x80"},
		{"truncated 2", "\xc3"},
		{"truncated 3", "\xe2\x82"},
		{"truncated 4", "\xf0\x9f\x98"},
		{"truncated then ASCII", "\xe2\x82a"},
		{"U+FFFD itself", "\xef\xbf\xbd"},
		{"noncharacter U+FFFE", "\xef\xbf\xbe"},
		{"Autobahn 6.4.1", "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xf4\x90\x80\x80\x65\x64\x69\x74\x65\x64"},
		{"ASCII run then bad", "0123456789abcdef\xff"},
		{"ASCII run then 4-byte", "0123456789abcdef\xf0\x9f\x99\x82xyz"},
		{"ASCII run, bad at 8", "01234567\x80abcdefgh"},
		{"ASCII run, bad at 7", "0123456\x80abcdefgh"},
	} {
		t.Run(tc.name, func(t *testing.T) { checkUTF8(t, []byte(tc.in)) })
	}
}

func TestUTF8ASCIIFastPath(t *testing.T) {
	// Every byte value at every offset of an ASCII run, alone and followed
	// by each kind of continuation: the 8-byte skip must hand over to the
	// DFA at the right byte.
	for k := range 25 {
		for b := range 256 {
			for _, tail := range []string{"", "\x80", "\xa0\x80", "\x90\x80\x80", "tail of ASCII"} {
				p := []byte("abcdefghijklmnopqrstuvwxyz")[:k]
				p = append(p, byte(b))
				p = append(p, tail...)
				p = append(p, "0123456789"...)
				checkUTF8(t, p)
			}
		}
	}
}

func TestUTF8Exhaustive1And2Bytes(t *testing.T) {
	var p [2]byte
	for a := range 256 {
		p[0] = byte(a)
		checkUTF8(t, p[:1])
		for b := range 256 {
			p[1] = byte(b)
			checkUTF8(t, p[:2])
		}
	}
}

// TestUTF8Exhaustive3Bytes checks all 16.7 million 3-byte strings. It uses
// a lighter check than checkUTF8 per string (the full one would take
// minutes under -race): whole buffer against utf8.Valid, the reject index
// against the reference, and both 2-chunk splits.
func TestUTF8Exhaustive3Bytes(t *testing.T) {
	var p [3]byte
	for a := range 256 {
		p[0] = byte(a)
		sa := utf8Accept.validUTF8(p[:1])
		for b := range 256 {
			p[1] = byte(b)
			sab := sa.validUTF8(p[1:2])
			for c := range 256 {
				p[2] = byte(c)
				whole := utf8Accept.validUTF8(p[:])
				split1 := sa.validUTF8(p[1:])
				split2 := sab.validUTF8(p[2:])
				if whole != split1 || whole != split2 {
					t.Fatalf("% x: whole %d, split after 1: %d, after 2: %d", p, whole, split1, split2)
				}
				if (whole == utf8Accept) != utf8.Valid(p[:]) {
					t.Fatalf("% x: validUTF8 = %d, utf8.Valid = %v", p, whole, utf8.Valid(p[:]))
				}
				at := -1
				switch {
				case sa == utf8Reject:
					at = 0
				case sab == utf8Reject:
					at = 1
				case whole == utf8Reject:
					at = 2
				}
				if ref := refFirstReject(p[:]); at != ref {
					t.Fatalf("% x: rejected at %d, reference %d", p, at, ref)
				}
			}
		}
	}
}

// interestingBytes holds the edges of every byte class of the DFA and of
// the valid ranges of each position in a sequence.
var interestingBytes = []byte{
	0x00, 0x41, 0x7f,
	0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf,
	0xc0, 0xc1, 0xc2, 0xdf,
	0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef,
	0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xf7, 0xf8, 0xfe, 0xff,
}

func TestUTF8Exhaustive4BytesOfEdges(t *testing.T) {
	var p [4]byte
	for _, a := range interestingBytes {
		for _, b := range interestingBytes {
			for _, c := range interestingBytes {
				for _, d := range interestingBytes {
					p = [4]byte{a, b, c, d}
					checkUTF8(t, p[:])
				}
			}
		}
	}
}

func TestUTF8Sampled4Bytes(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	var p [4]byte
	// Every lead byte from E0 and every second byte, with random tails:
	// the 3- and 4-byte cases where the second byte decides.
	for a := 0xe0; a <= 0xff; a++ {
		for b := range 256 {
			for range 16 {
				p = [4]byte{byte(a), byte(b), byte(rng.IntN(256)), byte(rng.IntN(256))}
				checkUTF8(t, p[:])
			}
		}
	}
	// Uniform random 4-byte strings, biased toward sequences that start
	// a 4-byte character and toward continuation bytes.
	for range 300_000 {
		switch rng.IntN(3) {
		case 0:
			p = [4]byte{byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256)), byte(rng.IntN(256))}
		case 1:
			p = [4]byte{byte(0xf0 + rng.IntN(8)), byte(0x80 + rng.IntN(64)), byte(0x80 + rng.IntN(64)), byte(0x80 + rng.IntN(64))}
		default:
			p = [4]byte{byte(0xf0 + rng.IntN(16)), byte(rng.IntN(256)), byte(0x70 + rng.IntN(0x60)), byte(0x70 + rng.IntN(0x60))}
		}
		checkUTF8(t, p[:])
	}
	// Every valid 4-byte character, alone and truncated.
	for r := rune(0x10000); r <= utf8.MaxRune; r++ {
		n := utf8.EncodeRune(p[:], r)
		require.Equal(t, 4, n)
		if utf8Accept.validUTF8(p[:]) != utf8Accept {
			t.Fatalf("U+%X (% x) not accepted", r, p)
		}
		if s := utf8Accept.validUTF8(p[:3]); s == utf8Accept || s == utf8Reject {
			t.Fatalf("U+%X truncated to 3 bytes: state %d", r, s)
		}
	}
}

func TestUTF8AllRunes(t *testing.T) {
	var p [utf8.UTFMax]byte
	for r := rune(0); r <= utf8.MaxRune; r++ {
		if r >= 0xd800 && r <= 0xdfff {
			// Encode the surrogate by hand (EncodeRune would write U+FFFD).
			enc := []byte{0xed, byte(0x80 | (r>>6)&0x3f), byte(0x80 | r&0x3f)}
			s, at := dfaRun(enc)
			if s != utf8Reject || at != 1 {
				t.Fatalf("surrogate U+%X (% x): state %d, rejected at %d; want reject at 1", r, enc, s, at)
			}
			continue
		}
		n := utf8.EncodeRune(p[:], r)
		if s := utf8Accept.validUTF8(p[:n]); s != utf8Accept {
			t.Fatalf("U+%X (% x): state %d", r, p[:n], s)
		}
	}
	// Past U+10FFFF, in the 4-byte form: F4 90..BF and F5..F7 leads.
	for _, enc := range [][]byte{{0xf4, 0x90, 0x80, 0x80}, {0xf4, 0xbf, 0xbf, 0xbf}} {
		s, at := dfaRun(enc)
		assert.Equal(t, utf8Reject, s)
		assert.Equal(t, 1, at, "% x", enc)
	}
	for lead := 0xf5; lead <= 0xf7; lead++ {
		s, at := dfaRun([]byte{byte(lead), 0x80, 0x80, 0x80})
		assert.Equal(t, utf8Reject, s)
		assert.Equal(t, 0, at, "lead %#x", lead)
	}
}

// randomText returns a string mixing valid characters of every length,
// edge code points and, when dirty, arbitrary bytes.
func randomText(rng *rand.Rand, n int, dirty bool) []byte {
	edges := []rune{0, 0x7f, 0x80, 0x7ff, 0x800, 0xd7ff, 0xe000, 0xfffd, 0xffff, 0x10000, 0x10ffff}
	var p []byte
	for len(p) < n {
		switch k := rng.IntN(10); {
		case k < 4:
			// A run of ASCII, long enough to use the 8-byte fast path.
			for range rng.IntN(24) {
				p = append(p, byte(0x20+rng.IntN(0x5f)))
			}
		case k < 7:
			r := rune(rng.IntN(utf8.MaxRune + 1))
			if r >= 0xd800 && r <= 0xdfff {
				r = 0x41
			}
			p = utf8.AppendRune(p, r)
		case k < 8:
			p = utf8.AppendRune(p, edges[rng.IntN(len(edges))])
		default:
			if dirty {
				p = append(p, byte(rng.IntN(256)))
			} else {
				p = utf8.AppendRune(p, rune(0x80+rng.IntN(0x780)))
			}
		}
	}
	return p
}

func TestUTF8Random(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 20_000 {
		p := randomText(rng, rng.IntN(80), i%2 == 0)
		checkUTF8(t, p)
		// Damage one byte of a valid string.
		if len(p) > 0 && i%4 == 1 {
			q := append([]byte(nil), p...)
			q[rng.IntN(len(q))] = byte(rng.IntN(256))
			checkUTF8(t, q)
			// And cut it anywhere: truncated sequences.
			checkUTF8(t, q[:rng.IntN(len(q)+1)])
		}
	}
}

func TestUTF8RandomChunks(t *testing.T) {
	// Many chunks, not just two: the state carries across any split.
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 5_000 {
		p := randomText(rng, 200+rng.IntN(200), i%2 == 0)
		whole := utf8Accept.validUTF8(p)
		s := utf8Accept
		for rest := p; len(rest) > 0; {
			k := min(len(rest), 1+rng.IntN(12))
			s = s.validUTF8(rest[:k])
			rest = rest[k:]
		}
		require.Equal(t, whole, s, "% x", p)
		require.Equal(t, utf8.Valid(p), whole == utf8Accept, "% x", p)
	}
}
