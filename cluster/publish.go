package cluster

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Publish stores data as topic's next message and returns its seq. The seq
// is agreed without a coordinator: the message names the stream sequence of
// the subject's last message it follows (Nats-Expected-Last-Subject-Sequence),
// JetStream refuses it if another came first, and it is built again on the
// new last message and retried. Its Nats-Msg-Id, the same on every attempt,
// makes a retry of an attempt that was stored but not acknowledged a
// duplicate, not a second message.
func (b *Broker) Publish(ctx context.Context, topic string, data []byte) (uint64, error) {
	if !b.nc.IsConnected() {
		// Refused at once, not buffered until NATS comes back.
		return 0, fmt.Errorf("cluster: publish to %s: %w", topic, nats.ErrDisconnected)
	}
	subj := b.subject(topic)
	id := b.idPrefix + "-" + strconv.FormatUint(b.nextID.Add(1), 36)
	last, known := b.heads.get(topic)
	for attempt := 0; ; attempt++ {
		if !known {
			var err error
			if last, err = b.last(ctx, subj); err != nil {
				return 0, err
			}
		}
		next := head{seq: last.seq + 1, epoch: last.epoch}
		if last.stream == 0 {
			// The topic holds no message: its history starts here.
			next = head{seq: 1, epoch: newEpoch()}
		}
		msg := &nats.Msg{Subject: subj, Data: data, Header: nats.Header{}}
		msg.Header.Set(jetstream.MsgIDHeader, id)
		msg.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(last.stream, 10))
		msg.Header.Set(seqHeader, strconv.FormatUint(next.seq, 10))
		msg.Header.Set(epochHeader, next.epoch)
		ack, err := b.js.PublishMsg(ctx, msg)
		switch {
		case wrongLastSeq(err):
			// Another node's message came first: build on it.
			known = false
			if ctx.Err() != nil {
				return 0, fmt.Errorf("cluster: publish to %s: %d conflicts: %w", topic, attempt+1, ctx.Err())
			}
			continue
		case err != nil:
			return 0, fmt.Errorf("cluster: publish to %s: %w", topic, err)
		case ack.Duplicate:
			// An earlier attempt was stored: its seq is the one.
			stored, err := b.stream.GetMsg(ctx, ack.Sequence)
			if err != nil {
				return 0, fmt.Errorf("cluster: publish to %s: read back duplicate %d: %w", topic, ack.Sequence, err)
			}
			if next, err = headOf(stored.Sequence, stored.Header); err != nil {
				return 0, fmt.Errorf("cluster: publish to %s: %w", topic, err)
			}
		default:
			next.stream = ack.Sequence
		}
		b.heads.put(topic, next)
		return next.seq, nil
	}
}

// last reads the last message stored on subj.
func (b *Broker) last(ctx context.Context, subj string) (head, error) {
	m, err := b.stream.GetLastMsgForSubject(ctx, subj)
	switch {
	case errors.Is(err, jetstream.ErrMsgNotFound):
		return head{}, nil
	case err != nil:
		return head{}, fmt.Errorf("cluster: read the last message of %s: %w", subj, err)
	}
	return headOf(m.Sequence, m.Header)
}

// headOf reads the seq and epoch a stored message carries (seq 0: an
// epoch's marker, see ensureEpoch).
func headOf(stream uint64, h nats.Header) (head, error) {
	seq, err := strconv.ParseUint(h.Get(seqHeader), 10, 64)
	epoch := h.Get(epochHeader)
	if err != nil || epoch == "" {
		return head{}, fmt.Errorf("cluster: message %d carries no valid %s and %s headers: not stored by fanout", stream, seqHeader, epochHeader)
	}
	return head{stream: stream, seq: seq, epoch: epoch}, nil
}

// wrongLastSeq reports whether JetStream refused a publish because the
// subject's last message is not the one it named. Replicated streams
// report it with another code.
func wrongLastSeq(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant)
}

// newEpoch names a topic's history that starts now.
func newEpoch() string {
	return strconv.FormatInt(time.Now().UnixNano(), 36)
}
