package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout/fanout/broadcast"
)

// Publish stores data as topic's next message and returns its seq. The seq
// is agreed without a coordinator: the message names the stream sequence of
// the subject's last message it follows (Nats-Expected-Last-Subject-Sequence),
// JetStream refuses it if another came first, and it is built again on the
// new last message and tried again. An attempt that gets no answer in time
// is sent again unchanged, with the same Nats-Msg-Id, so that if the first
// was stored the second is a duplicate, not a second message. An error
// wraps broadcast.ErrNotStored when the message surely was not stored.
func (b *Broker) Publish(ctx context.Context, topic string, data []byte) (uint64, error) {
	if !b.connected.Load() {
		// Refused at once, not held until NATS comes back.
		return 0, fmt.Errorf("cluster: publish to %s: %w: %w", topic, broadcast.ErrNotStored, nats.ErrDisconnected)
	}
	subj := b.subject(topic)
	id := b.idPrefix + "-" + strconv.FormatUint(b.nextID.Add(1), 36)
	last, known := b.heads.get(topic)
	unanswered := false // an attempt may have been stored
	fail := func(err error) (uint64, error) {
		if !unanswered {
			err = fmt.Errorf("%w: %w", broadcast.ErrNotStored, err)
		}
		return 0, fmt.Errorf("cluster: publish to %s: %w", topic, err)
	}
	for conflicts := 0; ; {
		if !known {
			var err error
			if last, err = b.last(ctx, subj); err != nil {
				return fail(err)
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
		ack, err := b.send(ctx, msg, &unanswered)
		switch {
		case wrongLastSeq(err):
			// Another message came first: build on it. (An attempt
			// that was stored would have made this one a duplicate.)
			known = false
			if conflicts++; conflicts > 3 {
				// Many nodes at one topic: let the others through.
				if sleep(ctx, time.Duration(rand.Int64N(int64(conflicts)*int64(time.Millisecond)))) != nil {
					return fail(fmt.Errorf("%d conflicts: %w", conflicts, ctx.Err()))
				}
			}
			continue
		case err != nil:
			return fail(err)
		}
		// A duplicate is an earlier attempt of this same message, stored
		// with these same headers: every attempt after a refused one is
		// built anew, and one unanswered is sent again unchanged.
		next.stream = ack.Sequence
		b.heads.set(topic, next)
		return next.seq, nil
	}
}

// attemptTimeout bounds the wait for one attempt's acknowledgement, after
// which it is sent again.
const attemptTimeout = 2 * time.Second

// send publishes msg and waits for its acknowledgement, sending it again
// while an attempt gets no answer and ctx allows; it sets *unanswered once
// one went unanswered.
func (b *Broker) send(ctx context.Context, msg *nats.Msg, unanswered *bool) (*jetstream.PubAck, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, attemptTimeout)
		ack, err := b.js.PublishMsg(actx, msg)
		cancel()
		if err == nil || !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, nats.ErrTimeout) {
			return ack, err
		}
		*unanswered = true
		if ctx.Err() != nil || !b.connected.Load() {
			return nil, err
		}
	}
}

// sleep waits d, or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
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
