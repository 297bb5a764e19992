//go:build (darwin || freebsd || netbsd || openbsd) && !386 && !arm

package poller

import (
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestStaleEventOfReusedFd: both filters of an fd report in one batch; the
// turn of the first deletes the fd and puts a new socket at its number,
// registered for reading, before the poller gets to the second event. That
// event belongs to the old registration: it must neither reach the new
// callback nor disarm the new registration, or the new socket's first byte
// goes unreported. (With one "disarmed" bit per fd number, it did both.)
//
// The write filter is made ready first and the read filter second, so that
// the stale event is a read event, which the new registration is armed for:
// only its id tells it apart.
//
// CI builds this test but runs it on Linux only, where it is not compiled.
func TestStaleEventOfReusedFd(t *testing.T) {
	p := newPoller(t)
	a, b, _ := socketPair(t)
	c, d, _ := socketPair(t)

	// Hold the poller's goroutine in a callback while both of a's filters
	// become ready, so that one kevent call collects the two.
	h, hw, _ := socketPair(t)
	held, release := make(chan struct{}), make(chan struct{})
	require.NoError(t, p.Add(h, Readable, func(Event) {
		close(held)
		<-release
	}))
	writeByte(t, hw)
	<-held

	fresh := newRecorder(t)
	var once sync.Once
	swapped := make(chan struct{})
	require.NoError(t, p.Add(a, Readable|Writable, func(Event) {
		once.Do(func() {
			defer close(swapped)
			// On the poller's goroutine: the rest of the batch waits.
			assert.NoError(t, p.Del(a))
			// Dup2 closes the old socket and puts c's at a's number.
			assert.NoError(t, unix.Dup2(c, a))
			assert.NoError(t, p.Add(a, Readable, fresh.cb))
		})
	}))
	// a is writable (queued now), then readable (queued after).
	writeByte(t, b)
	close(release)
	<-swapped

	settle(t, p)
	fresh.none() // nothing to read on the new socket yet
	writeByte(t, d)
	assert.Equal(t, Readable, fresh.wait())
	require.NoError(t, p.Del(a))
}
