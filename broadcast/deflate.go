package broadcast

import (
	"sync"

	"github.com/fanout/fanout/wsconn"
)

// deflatedFrame is a message's frame compressed for the subscribers that
// negotiated permessage-deflate (wsconn.Conn.Compressed): made at most once,
// by the first shard that has such a subscriber for it, then shared by all,
// as the plain frame is. A message nobody of them receives is never
// compressed.
//
// It is safe for concurrent use: shards fan one message out at once.
type deflatedFrame struct {
	once  sync.Once
	frame []byte // nil: compression does not pay; the plain frame goes
}

// get returns the compressed form of plain, compressing it on the first
// call, or nil when the plain frame is to be sent.
func (d *deflatedFrame) get(h *Hub, plain []byte) []byte {
	d.once.Do(func() {
		d.frame = h.deflater.CompressFrame(plain)
		if d.frame != nil {
			h.compressed.Add(1)
		}
	})
	return d.frame
}

// deflateFor returns what a publish of frame carries for the compressed
// subscribers: nil, and no allocation, unless some client can take a
// compressed frame and frame is long enough to be worth it.
func (h *Hub) deflateFor(frame []byte) *deflatedFrame {
	// The header is 2 bytes at least: the compressor checks the payload.
	if h.deflater == nil || h.deflateClients.Load() == 0 || len(frame)-2 < h.cfg.CompressMinBytes {
		return nil
	}
	return new(deflatedFrame)
}

// newDeflater returns the hub's compressor, or nil with compression off.
func newDeflater(cfg Config) *wsconn.Deflater {
	if cfg.CompressMinBytes < 0 {
		return nil
	}
	return wsconn.NewDeflater(cfg.CompressMinBytes)
}
