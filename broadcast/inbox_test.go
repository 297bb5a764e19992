package broadcast

import (
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInboxOrderAndRoom: put never blocks, even far past the limit; take
// returns the ops in order; past the limit put hands out a room channel
// that take closes.
func TestInboxOrderAndRoom(t *testing.T) {
	b := newInbox(2)
	var rooms []<-chan struct{}
	for i := range 5 {
		rooms = append(rooms, b.put(op{seq: uint64(i)}))
	}
	assert.Nil(t, rooms[0])
	assert.Nil(t, rooms[1])
	for _, r := range rooms[2:] {
		require.NotNil(t, r, "past the limit, put asks the caller to wait")
		select {
		case <-r:
			t.Fatal("room before the shard took anything")
		default:
		}
	}
	assert.True(t, rooms[2] == rooms[4], "one room for all who wait on one take")

	ops := b.take()
	require.Len(t, ops, 5)
	for i, o := range ops {
		assert.Equal(t, uint64(i), o.seq)
	}
	waitRoom(rooms...) // closed by take: returns at once

	// Under the limit again; the next batch reuses nothing still in use.
	assert.Nil(t, b.put(op{seq: 5}))
	assert.Equal(t, []op{{seq: 5}}, b.take())
}

// TestInboxConcurrentPosters: ops from many posters arrive whole, each
// poster's in its own order, while the consumer is slow and the posters
// wait for room as the shard's posters do.
func TestInboxConcurrentPosters(t *testing.T) {
	const posters, each = 8, 2000
	b := newInbox(4)
	var wg sync.WaitGroup
	for p := range posters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				waitRoom(b.put(op{seq: uint64(p*each + i)}))
			}
		}()
	}
	next := make([]uint64, posters)
	for i := range posters {
		next[i] = uint64(i * each)
	}
	got := 0
	deadline := time.After(10 * time.Second)
	for got < posters*each {
		select {
		case <-deadline:
			t.Fatalf("got %d of %d ops", got, posters*each)
		default:
		}
		for _, o := range b.take() {
			p := o.seq / each
			require.Equal(t, next[p], o.seq, "poster %d out of order", p)
			next[p]++
			got++
		}
	}
	wg.Wait()
}

// TestInboxIdleLetsGo: a shard that has handled a burst and finds its inbox
// empty holds none of the ops it handled (their frames and clients); once
// a trim finds the inbox quiet, it gives back the capacity the burst grew.
// A trim that finds ops put since the last one shrinks nothing.
func TestInboxIdleLetsGo(t *testing.T) {
	const burst = 10 * inboxKeep
	b := newInbox(burst)
	frame := []byte("a frame")
	for i := range burst {
		b.put(op{seq: uint64(i), frame: frame})
	}
	require.Len(t, b.take(), burst)
	b.put(op{seq: burst, frame: frame})
	require.Len(t, b.take(), 1) // the burst's slice is now the inbox's to fill

	got := make(chan []op, 1)
	go func() { got <- b.take() }() // finds nothing: the shard is idle
	state := func() (held, capacity int) {
		b.mu.Lock()
		defer b.mu.Unlock()
		for _, o := range b.spare[:cap(b.spare)] {
			if o.frame != nil {
				held++
			}
		}
		for _, o := range b.ops[:cap(b.ops)] {
			if o.frame != nil {
				held++
			}
		}
		return held, cap(b.ops) + cap(b.spare)
	}
	require.Eventually(t, func() bool {
		h, _ := state()
		return h == 0
	}, 2*time.Second, time.Millisecond, "an idle inbox holds ops the shard handled")

	b.trim() // ops were put since the inbox was made: not quiet
	time.Sleep(10 * time.Millisecond)
	_, c := state()
	assert.Greater(t, c, 2*inboxKeep, "a trim after puts shrank the inbox")

	b.trim() // nothing put since the last trim
	require.Eventually(t, func() bool {
		_, c := state()
		return c <= 2*inboxKeep
	}, 2*time.Second, time.Millisecond, "a quiet inbox keeps a burst's capacity")

	b.put(op{seq: burst + 1})
	select {
	case ops := <-got:
		assert.Equal(t, []op{{seq: burst + 1}}, ops)
	case <-time.After(5 * time.Second):
		t.Fatal("take did not return the op put after it waited")
	}
}
