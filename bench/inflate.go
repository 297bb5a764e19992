package bench

import (
	"bytes"
	"compress/flate"
	"io"
)

// prefixBytes is how much of a compressed message a subscriber inflates:
// the envelope {"topic":…,"seq":N,"data":{"t":T comes first, and the rest
// is not looked at.
const prefixBytes = 256

// prefixInflater inflates the start of compressed messages
// (permessage-deflate, no context takeover) for one slot: the reader, its
// window and the output buffer are reused from message to message.
type prefixInflater struct {
	src bytes.Reader // an io.ByteReader: flate reads it directly
	fr  io.ReadCloser
	out [prefixBytes]byte
}

// prefix returns the first bytes p inflates to, up to prefixBytes; nil if
// p does not inflate. The result is valid until the next call. Only the
// start is looked at: a server that joined several messages into one
// compressed frame would have the later ones go uncounted (fanout does
// not join; no peer compresses).
func (z *prefixInflater) prefix(p []byte) []byte {
	z.src.Reset(p)
	if z.fr == nil {
		z.fr = flate.NewReader(&z.src)
	} else if z.fr.(flate.Resetter).Reset(&z.src, nil) != nil {
		return nil
	}
	// A message shorter than the prefix ends without the final block the
	// sender removed: io.ErrUnexpectedEOF, after all of it.
	n, err := io.ReadFull(z.fr, z.out[:])
	if err != nil && err != io.ErrUnexpectedEOF {
		return nil
	}
	return z.out[:n]
}
