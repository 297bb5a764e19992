package broadcast_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// TestFastReadersNotEvicted: one burst of 20 messages of 60 KiB (1.2 MiB)
// to subscribers that read as fast as they can, with a 256 KiB write queue.
// A shard queues a pass's frames before it flushes; admission must try the
// socket before it calls a subscriber slow, so that none of them is
// evicted (all were, with 4008, having received nothing).
func TestFastReadersNotEvicted(t *testing.T) {
	const (
		subscribers = 100
		burst       = 20
		size        = 60 << 10
	)
	ts := startHub(t, broadcast.Config{}, wsconn.Config{MaxQueueBytes: 256 << 10})
	subs := make([]*rawClient, subscribers)
	for i := range subs {
		subs[i] = dialRaw(t, ts.addr, "/ws?topics=burst", 0)
		f, err := subs[i].readFrame(waitTimeout)
		require.NoError(t, err)
		r, err := parseFrame(f.Payload)
		require.NoError(t, err)
		require.Equal(t, "subscribed", r.Type, "%s", r)
	}
	var wg sync.WaitGroup
	errs := make(chan error, subscribers)
	for i, c := range subs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := uint64(1); seq <= burst; seq++ {
				f, err := c.readFrame(waitTimeout)
				if err == nil && f.Op != opText {
					err = fmt.Errorf("frame op %#x (close code %d)", f.Op, f.closeCode())
				}
				if err != nil {
					errs <- fmt.Errorf("subscriber %d, message %d of %d: %w", i, seq, burst, err)
					return
				}
			}
		}()
	}
	data := jsonData(0, size)
	for range burst {
		ts.publish(t, "burst", data)
	}
	done := make(chan struct{})
	go func() {
		wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * waitTimeout):
		t.Fatal("the subscribers did not finish")
	}
	close(errs)
	failed := 0
	for err := range errs {
		if failed < 3 {
			t.Error(err)
		}
		failed++
	}
	st := ts.hub.Stats()
	assert.Zero(t, failed, "subscribers that missed messages")
	assert.Zero(t, st.SlowDisconnects, "fast readers evicted as slow consumers")
}
