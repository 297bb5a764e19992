package wsconn

import (
	"compress/flate"
	"io"
	"math"
	"sync"

	"github.com/gobwas/ws"
)

// The errors of inflating a client's compressed message.
var (
	errInflate        = &CloseError{ws.StatusInvalidFramePayloadData, "compressed message does not inflate"}
	errInflatedTooBig = &CloseError{ws.StatusMessageTooBig, "inflated message over the size limit"}
)

// deflateTail ends a message's compressed bytes for the inflater: the empty
// stored block the sender removed (RFC 7692 section 7.2.2), then a final
// empty stored block, so that the stream ends cleanly instead of with
// io.ErrUnexpectedEOF.
const deflateTail = "\x00\x00\xff\xff\x01\x00\x00\xff\xff"

// inflaters inflates clients' compressed messages with pooled flate readers.
// A connection holds none between messages: the server always negotiates
// client_no_context_takeover, so a message never refers back to the one
// before, and a reader (40,528 bytes with its window) serves any connection
// for one message at a time.
//
// It is safe for concurrent use.
type inflaters struct {
	pool sync.Pool // of *inflater
}

// inflater is one pooled flate reader and the source it reads.
type inflater struct {
	src inflateSource
	fr  io.ReadCloser // a flate reader over src; also a flate.Resetter
}

// inflate returns the message that compressed inflates to, at most limit
// bytes. The buffer grows with what inflates, never by the size a sender
// declares or a bomb would reach: a message that inflates past limit fails
// with 1009 once limit+1 bytes are out. A text message is checked for
// UTF-8 (1007). The result is a new buffer; compressed is not kept.
func (s *inflaters) inflate(compressed []byte, limit int64, text bool) ([]byte, error) {
	in, _ := s.pool.Get().(*inflater)
	if in == nil {
		in = new(inflater)
		in.src.reset(compressed)
		in.fr = flate.NewReader(&in.src)
	} else {
		in.src.reset(compressed)
		if err := in.fr.(flate.Resetter).Reset(&in.src, nil); err != nil {
			return nil, errInflate
		}
	}
	defer func() {
		in.src.reset(nil) // do not pin the message's bytes in the pool
		s.pool.Put(in)
	}()

	// The buffer never grows past limit+1 bytes: one byte over is enough
	// to know. (limit+1 would overflow for a limit of MaxInt64, "none".)
	most := limit
	if most < math.MaxInt64 {
		most++
	}
	// A first guess of four times the compressed size; the buffer doubles
	// from there, up to limit+1.
	out := make([]byte, 0, min(most, int64(max(4*len(compressed), 512))))
	for {
		if len(out) == cap(out) {
			if int64(len(out)) > limit {
				return nil, errInflatedTooBig
			}
			grown := make([]byte, len(out), min(most, int64(2*cap(out))))
			copy(grown, out)
			out = grown
		}
		n, err := in.fr.Read(out[len(out):cap(out)])
		out = out[:len(out)+n]
		if int64(len(out)) > limit {
			return nil, errInflatedTooBig
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, errInflate
		}
	}
	if text && utf8Accept.validUTF8(out) != utf8Accept {
		return nil, errTextUTF8
	}
	return out, nil
}

// inflateSource reads a message's compressed bytes and then deflateTail. It
// is an io.ByteReader, so that the flate reader reads it directly instead of
// through a bufio.Reader of its own.
type inflateSource struct {
	p    []byte
	tail string
}

func (r *inflateSource) reset(p []byte) { r.p, r.tail = p, deflateTail }

func (r *inflateSource) Read(b []byte) (int, error) {
	if len(r.p) > 0 {
		n := copy(b, r.p)
		r.p = r.p[n:]
		return n, nil
	}
	if len(r.tail) > 0 {
		n := copy(b, r.tail)
		r.tail = r.tail[n:]
		return n, nil
	}
	return 0, io.EOF
}

func (r *inflateSource) ReadByte() (byte, error) {
	if len(r.p) > 0 {
		b := r.p[0]
		r.p = r.p[1:]
		return b, nil
	}
	if len(r.tail) > 0 {
		b := r.tail[0]
		r.tail = r.tail[1:]
		return b, nil
	}
	return 0, io.EOF
}
