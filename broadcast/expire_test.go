package broadcast

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestExpiryDoesNotStopTheWorld: the expiry sweep held the topic map's
// write lock while it walked every topic, taking each topic's lock in
// turn, so a publish to any topic waited for the whole walk (40–170 ms per
// sweep at 300k topics), and for any topic whose lock was busy. Here one
// topic's lock is held while sweeps run: a publish to another existing
// topic must still go through.
func TestExpiryDoesNotStopTheWorld(t *testing.T) {
	h := New(Config{HistoryAge: 40 * time.Millisecond, Shards: 1}) // a sweep every 10 ms
	defer h.Close()
	for _, name := range []string{"busy", "other"} {
		_, err := h.Publish(name, []byte(`1`))
		require.NoError(t, err)
	}
	busy, err := h.topic("busy")
	require.NoError(t, err)
	busy.mu.Lock()
	time.Sleep(100 * time.Millisecond) // a sweep is now waiting for busy
	done := make(chan error, 1)
	go func() {
		_, err := h.Publish("other", []byte(`2`))
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(5 * time.Second):
		busy.mu.Unlock()
		<-done
		t.Fatal("a publish waited for the expiry sweep, which waited for another topic's lock")
	}
	busy.mu.Unlock()
}
