package cluster

import (
	"context"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/fanout/fanout/broadcast"
)

// Watch reads topic's last stored message and starts an ordered JetStream
// consumer of the topic's subject from the message after it: one consumer
// per topic per node, whatever its subscribers. The consumer re-creates
// itself after a disconnect from where it was, so messages come in stream
// order, which is seq order within a topic.
func (b *Broker) Watch(ctx context.Context, topic string, deliver func(broadcast.BrokerMessage)) (broadcast.Watch, broadcast.BrokerMessage, error) {
	subj := b.subject(topic)
	last, err := b.last(ctx, subj)
	if err != nil {
		return nil, broadcast.BrokerMessage{}, err
	}
	b.heads.put(topic, last)
	cons, err := b.stream.OrderedConsumer(ctx, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{subj},
		DeliverPolicy:  jetstream.DeliverByStartSequencePolicy,
		OptStartSeq:    last.stream + 1,
	})
	if err != nil {
		return nil, broadcast.BrokerMessage{}, fmt.Errorf("cluster: consume %s: %w", subj, err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil {
			b.log.Warn("cluster: message without metadata", "subject", subj, "err", err)
			return
		}
		h, err := headOf(md.Sequence.Stream, m.Headers())
		if err != nil {
			b.log.Warn("cluster: message skipped", "subject", subj, "err", err)
			return
		}
		b.heads.put(topic, h)
		deliver(broadcast.BrokerMessage{Seq: h.seq, Epoch: h.epoch, Data: m.Data(), Time: md.Timestamp})
	})
	if err != nil {
		return nil, broadcast.BrokerMessage{}, fmt.Errorf("cluster: consume %s: %w", subj, err)
	}
	return cc, broadcast.BrokerMessage{Seq: last.seq, Epoch: last.epoch}, nil
}
