package poller

import (
	"math"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// takes reports whether take lets ev of registration id of fd through.
func takes(r *registry, fd int, id uint32, ev Event) bool {
	_, ok := r.take(fd, id, ev)
	return ok
}

// An event collected for a registration that was then deleted must not
// reach the registration added next on the same fd number, nor disarm it:
// that would swallow the new registration's first event.
func TestRegistryStaleEventDropped(t *testing.T) {
	var r registry
	var got []string
	old, err := r.add(7, Readable|Writable, func(Event) { got = append(got, "old") })
	require.NoError(t, err)

	// The kernel reports both filters of the old registration in one
	// batch; the first one's turn closes the fd, and a new connection
	// gets its number before the second event is looked at.
	cb, ok := r.take(7, old, Readable)
	require.True(t, ok)
	cb(Readable)
	require.NoError(t, r.del(7))
	id, err := r.add(7, Readable, func(Event) { got = append(got, "new") })
	require.NoError(t, err)
	assert.NotEqual(t, old, id)

	assert.False(t, takes(&r, 7, old, Writable|Hangup), "stale event delivered")
	assert.False(t, takes(&r, 7, old, Readable), "stale event delivered")

	cb, ok = r.take(7, id, Readable)
	require.True(t, ok, "the new registration's first event was swallowed")
	cb(Readable)
	assert.Equal(t, []string{"old", "new"}, got)
}

func TestRegistryOneShotAcrossFilters(t *testing.T) {
	var r registry
	id, err := r.add(3, Readable|Writable, func(Event) {})
	require.NoError(t, err)

	assert.True(t, takes(&r, 3, id, Writable))
	assert.False(t, takes(&r, 3, id, Readable), "one event per arm")
	assert.False(t, takes(&r, 3, id, Writable))

	// Armed for reading only: a write event collected before is dropped,
	// and so is a hangup that comes with no filter the fd is armed for.
	got, err := r.arm(3, Readable)
	require.NoError(t, err)
	assert.Equal(t, id, got)
	assert.False(t, takes(&r, 3, id, Writable))
	assert.False(t, takes(&r, 3, id, Writable|Hangup))
	assert.False(t, takes(&r, 3, id, Hangup))
	assert.True(t, takes(&r, 3, id, Readable|Hangup))

	// Armed for nothing: nothing gets through.
	_, err = r.arm(3, 0)
	require.NoError(t, err)
	assert.False(t, takes(&r, 3, id, Readable))
	assert.False(t, takes(&r, 3, id, Writable))
}

func TestRegistryErrors(t *testing.T) {
	var r registry
	_, err := r.add(2, Readable, func(Event) {})
	require.NoError(t, err)
	_, err = r.add(2, Readable, func(Event) {})
	assert.ErrorIs(t, err, ErrRegistered)

	for _, fd := range []int{-1, 1, 3, 1 << 20} {
		_, err = r.arm(fd, Readable)
		assert.ErrorIs(t, err, ErrNotRegistered, "arm %d", fd)
		assert.ErrorIs(t, r.del(fd), ErrNotRegistered, "del %d", fd)
		assert.False(t, takes(&r, fd, 1, Readable), "take %d", fd)
	}
	require.NoError(t, r.del(2))
	assert.ErrorIs(t, r.del(2), ErrNotRegistered)
	_, err = r.arm(2, Readable)
	assert.ErrorIs(t, err, ErrNotRegistered)
	assert.False(t, takes(&r, 2, 0, Readable), "id 0 is no registration")
}

// Ids never repeat within 2^32 registrations, and 0 (the wake pipe's, and
// a free slot's) is never given.
func TestRegistryIDWraps(t *testing.T) {
	var r registry
	r.lastID = math.MaxUint32 - 1
	a, err := r.add(0, Readable, func(Event) {})
	require.NoError(t, err)
	b, err := r.add(1, Readable, func(Event) {})
	require.NoError(t, err)
	assert.Equal(t, uint32(math.MaxUint32), a)
	assert.Equal(t, uint32(1), b)
}

// The slots grow under add while take, arm and del run on others: nothing
// is lost in the copy (run with -race).
func TestRegistryGrowsConcurrently(t *testing.T) {
	var r registry
	id, err := r.add(0, Readable, func(Event) {})
	require.NoError(t, err)

	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for fd := 1; fd < 5000; fd++ {
			if _, err := r.add(fd, Readable, func(Event) {}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for range 5000 {
		if !takes(&r, 0, id, Readable) {
			t.Fatal("armed registration not taken")
		}
		if _, err := r.arm(0, Readable); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
	for fd := 1; fd < 5000; fd++ {
		require.NoError(t, r.del(fd))
	}
}
