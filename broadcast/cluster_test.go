package broadcast_test

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/fanout/fanout/broadcast"
)

// stuckBroker is a broker whose publishes wait until released: NATS that
// does not answer.
type stuckBroker struct{ entered, release chan struct{} }

func (b *stuckBroker) Publish(ctx context.Context, _ string, _ []byte) (uint64, error) {
	close(b.entered)
	select {
	case <-b.release:
	case <-ctx.Done():
	}
	return 0, errors.New("no answer")
}

func (b *stuckBroker) Watch(context.Context, string, func(broadcast.BrokerMessage)) (broadcast.Watch, []broadcast.BrokerMessage, error) {
	return nil, nil, errors.New("no watch")
}

func (b *stuckBroker) Connected() bool { return true }

// TestCloseDoesNotWaitForBroker: a publish waiting for the cluster's broker
// holds no lock of the hub's, so Close (and all that waits behind it) does
// not wait for NATS. Three seconds is the deadline of a hang.
func TestCloseDoesNotWaitForBroker(t *testing.T) {
	b := &stuckBroker{entered: make(chan struct{}), release: make(chan struct{})}
	defer close(b.release)
	hub := broadcast.New(broadcast.Config{Broker: b, Logger: slog.New(slog.DiscardHandler)})
	published := make(chan error, 1)
	go func() {
		_, err := hub.Publish("t", []byte(`1`))
		published <- err
	}()
	<-b.entered
	closed := make(chan struct{})
	go func() {
		hub.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(3 * time.Second):
		t.Fatal("Close waits for a publish the broker has not answered")
	}
	b.release <- struct{}{}
	assert.ErrorIs(t, <-published, broadcast.ErrUnavailable)
}
