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
	allocs := testing.AllocsPerRun(100, func() {
		if err := p.Add(a, Readable, cb); err != nil {
			t.Fatal(err)
		}
		if err := p.Del(a); err != nil {
			t.Fatal(err)
		}
	})
	assert.LessOrEqual(t, allocs, 1.0)
}

// A Handler that is a pointer costs the adapter alone: a connection
// registers itself, with no method value besides.
func TestAddHandlerAllocatesOnePerFd(t *testing.T) {
	p := newPoller(t)
	a, _, _ := socketPair(t)
	r := newRecorder(t)
	allocs := testing.AllocsPerRun(100, func() {
		if err := p.AddHandler(a, Readable, r); err != nil {
			t.Fatal(err)
		}
		if err := p.Del(a); err != nil {
			t.Fatal(err)
		}
	})
	assert.LessOrEqual(t, allocs, 1.0)
}
