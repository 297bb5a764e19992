package wsconn

import (
	"encoding/binary"
	"unicode/utf8"
)

// utf8State is the state of a streaming UTF-8 validator: utf8Accept at a
// character boundary, utf8Reject after an invalid byte, anything else inside
// a multi-byte sequence. The zero value is utf8Accept, so a new message starts
// valid.
//
// The validator is Bjoern Hoehrmann's DFA ("Flexible and Economical UTF-8
// Decoder"), which rejects at the first byte that cannot start or continue a
// valid sequence: overlongs, surrogates and code points past U+10FFFF fail as
// early as the byte that makes them so. RFC 6455 asks a server to fail a text
// message that fast; unicode/utf8 only validates whole buffers.
type utf8State uint8

const (
	utf8Accept utf8State = 0
	utf8Reject utf8State = 12
)

// utf8Class maps a byte to its character class.
var utf8Class = [256]uint8{
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
	1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9,
	7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7,
	8, 8, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2,
	10, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 4, 3, 3, 11, 6, 6, 6, 5, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8, 8,
}

// utf8Transition maps state+class to the next state.
var utf8Transition = [108]utf8State{
	0, 12, 24, 36, 60, 96, 84, 12, 12, 12, 48, 72,
	12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
	12, 0, 12, 12, 12, 12, 12, 0, 12, 0, 12, 12,
	12, 24, 12, 12, 12, 12, 12, 24, 12, 24, 12, 12,
	12, 12, 12, 12, 12, 12, 12, 24, 12, 12, 12, 12,
	12, 24, 12, 12, 12, 12, 12, 12, 12, 24, 12, 12,
	12, 12, 12, 12, 12, 12, 12, 36, 12, 36, 12, 12,
	12, 36, 12, 12, 12, 12, 12, 36, 12, 36, 12, 12,
	12, 36, 12, 12, 12, 12, 12, 12, 12, 12, 12, 12,
}

// validUTF8 advances s over p and returns the new state. It stops at the first
// invalid byte, returning utf8Reject.
func (s utf8State) validUTF8(p []byte) utf8State {
	if s == utf8Accept && utf8.Valid(p) {
		// The common case, at the standard library's speed: a chunk that
		// starts and ends at character boundaries.
		return s
	}
	for i := 0; i < len(p); {
		// At a character boundary, skip ASCII eight bytes at a time: most
		// text is ASCII, and it comes back after every multi-byte character.
		if s == utf8Accept {
			for i+8 <= len(p) && binary.LittleEndian.Uint64(p[i:])&0x8080808080808080 == 0 {
				i += 8
			}
			if i == len(p) {
				break
			}
		}
		s = utf8Transition[s+utf8State(utf8Class[p[i]])]
		if s == utf8Reject {
			return s
		}
		i++
	}
	return s
}
