package broadcast

import (
	"strconv"
)

// allow takes a message from the client's rate bucket. Over the rate, the
// message is refused with an error frame and the bucket goes into debt;
// a client whose debt reaches a whole burst is closed with 1008, since it
// kept sending after it was told.
func (cl *client) allow(size int) bool {
	h := cl.hub()
	rate := h.cfg.MessageRate
	if rate <= 0 {
		return true
	}
	now := h.clock()
	burst := float32(h.cfg.MessageBurst)
	if cl.tokens <= -burst {
		return false // closing already
	}
	cl.tokens = min(burst, cl.tokens+float32(float64(now-cl.filled)*rate/1000))
	cl.filled = now
	cost := float32(1)
	if h.cfg.ByteRate > 0 {
		// Bytes count in the same bucket: a message costs the share of
		// a second its bytes take at ByteRate, in messages at MessageRate.
		cost = max(1, float32(float64(size)*rate/h.cfg.ByteRate))
	}
	if cl.tokens >= cost {
		cl.tokens -= cost
		return true
	}
	cl.tokens -= cost
	if cl.tokens <= -burst {
		h.rateCloses.Add(1)
		cl.closeForRate()
		return false
	}
	h.rateLimited.Add(1)
	limit := strconv.FormatFloat(rate, 'g', -1, 64) + " messages"
	if h.cfg.ByteRate > 0 {
		limit += " or " + strconv.FormatFloat(h.cfg.ByteRate, 'g', -1, 64) + " bytes"
	}
	cl.sendError(request{}, CodeRateLimited, "over "+limit+" per second; message dropped")
	return false
}

// rateCloseReason is the reason of the close for the message rate.
const rateCloseReason = "message rate exceeded"

// closeForRate closes the connection with CloseRateLimit through the
// client's shard, behind the replies and errors it has still to queue to
// the client: those that answer the messages before, among them the
// rate_limited errors that warned it. Closed at once, the close frame went
// ahead of them, and they were dropped. Meanwhile allow refuses the
// client's messages, unanswered.
func (cl *client) closeForRate() {
	h := cl.hub()
	if !h.enter() {
		// Shutting down: no shard queues anything more.
		cl.conn.Close(CloseRateLimit, rateCloseReason)
		return
	}
	room := cl.shard.post(op{kind: opRateClose, cl: cl})
	h.exit()
	waitRoom(room)
}
