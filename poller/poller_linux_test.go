package poller

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Arm runs once per turn of every connection: it must not allocate.
func TestArmDoesNotAllocate(t *testing.T) {
	p := newPoller(t)
	a, _, _ := socketPair(t)
	require.NoError(t, p.Add(a, Readable, func(Event) {}))
	allocs := testing.AllocsPerRun(100, func() {
		if err := p.Arm(a, Readable); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
}

// Per fd, the poller allocates one small adapter around the caller's
// callback; easygo's map holds it.
func TestAddAllocatesOnePerFd(t *testing.T) {
	p := newPoller(t)
	a, _, _ := socketPair(t)
	cb := func(Event) {}
	assert.LessOrEqual(t, addDelAllocs(t, p, a, func() error { return p.Add(a, Readable, cb) }), 1.0)
}

// A Handler that is a pointer costs the adapter alone: a connection
// registers itself, with no method value besides.
func TestAddHandlerAllocatesOnePerFd(t *testing.T) {
	p := newPoller(t)
	a, _, _ := socketPair(t)
	r := newRecorder(t)
	assert.LessOrEqual(t, addDelAllocs(t, p, a, func() error { return p.AddHandler(a, Readable, r) }), 1.0)
}

// addDelAllocs returns the allocations of registering fd with add and
// unregistering it, on average.
func addDelAllocs(t *testing.T, p *Poller, fd int, add func() error) float64 {
	t.Helper()
	return testing.AllocsPerRun(100, func() {
		if err := add(); err != nil {
			t.Fatal(err)
		}
		if err := p.Del(fd); err != nil {
			t.Fatal(err)
		}
	})
}
