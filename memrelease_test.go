package main

import (
	"context"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"

	"github.com/fanout/fanout/wsconn"
)

// TestAfterStorms: memory is released once a storm of connections is over
// (two quiet ticks), not during it, not after a trickle, not under steady
// churn, and at most once a minute.
func TestAfterStorms(t *testing.T) {
	start := time.Unix(1_000_000, 0)
	var a afterStorms
	var churn uint64
	var held int64
	at := func(sec int) time.Time { return start.Add(time.Duration(sec) * time.Second) }
	tick := func(sec int, opened, closed int) bool {
		churn += uint64(opened + closed)
		held += int64(opened - closed)
		return a.tick(at(sec), churn, held)
	}

	// A storm of 15,000 connects over 3 s, then quiet.
	assert.False(t, tick(1, 5000, 0))
	assert.False(t, tick(2, 5000, 0))
	assert.False(t, tick(3, 5000, 0), "released during the storm")
	assert.False(t, tick(4, 3, 1), "released after one quiet tick")
	assert.True(t, tick(5, 0, 0), "not released once the storm was over")
	assert.False(t, tick(6, 0, 0), "released twice for one storm")

	// A second storm within the minute waits for the minute.
	assert.False(t, tick(10, 4000, 0))
	assert.False(t, tick(11, 0, 0))
	assert.False(t, tick(12, 0, 0), "released twice within a minute")
	assert.True(t, tick(65, 0, 0), "the second storm's memory was never released")

	// A trickle is no storm: a few every second, for as long as it
	// lasts (found in review: 2 a second added up to a storm at 250 s).
	for sec := 66; sec < 300; sec++ {
		assert.False(t, tick(sec, 1, 1), "released after a trickle, at %ds", sec)
	}
	for sec := 300; sec < 1000; sec++ {
		assert.False(t, tick(sec, 2, 2), "released after a trickle, at %ds", sec)
	}

	// Steady churn never goes quiet: left to the runtime.
	for sec := 1000; sec < 1300; sec++ {
		assert.False(t, tick(sec, 300, 300), "released under steady churn, at %ds", sec)
	}

	// Once it goes quiet, what it churned counts as a storm.
	assert.False(t, tick(1300, 0, 0))
	assert.True(t, tick(1301, 0, 0), "180,000 opened and closed, never released")

	// At 19,000 held, a storm is at least an eighth of them: 1,500
	// closes are not one, 2,500 together are.
	assert.EqualValues(t, 19_002, held)
	assert.False(t, tick(1400, 0, 1500))
	assert.False(t, tick(1401, 0, 0))
	assert.False(t, tick(1402, 0, 0), "1,500 of 19,000 released")
	assert.False(t, tick(1403, 0, 1000))
	assert.False(t, tick(1404, 0, 0))
	assert.True(t, tick(1405, 0, 0), "2,500 of 16,500 not released")

	// Counters that step back (read one by one) count for nothing.
	assert.False(t, a.tick(at(1500), churn-5, held))
	assert.Equal(t, churn, a.churn)
}

// TestReleaseAfterStorms: the loop reads the server's counts and releases
// once after a storm, and stops with its context.
func TestReleaseAfterStorms(t *testing.T) {
	var accepted, conns atomic.Int64
	stats := func() wsconn.Stats {
		return wsconn.Stats{Connections: conns.Load(), Accepted: uint64(accepted.Load())}
	}
	released := make(chan struct{}, 4)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		releaseAfterStorms(ctx, 5*time.Millisecond, stats, func() { released <- struct{}{} }, slog.New(slog.DiscardHandler))
	}()
	select {
	case <-released:
		t.Fatal("released with no storm")
	case <-time.After(50 * time.Millisecond):
	}
	accepted.Store(3000)
	conns.Store(3000)
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("no release after a storm of 3,000 connects")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop did not stop with its context")
	}
	assert.Empty(t, released, "released more than once for one storm")
}
