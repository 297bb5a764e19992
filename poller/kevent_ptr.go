//go:build (darwin || freebsd || openbsd) && !386 && !arm

package poller

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// evDispatch disables a filter once it has reported an event, until
// EV_ENABLE.
const evDispatch = unix.EV_DISPATCH

// setUdata tags k with a registration id. udata is a pointer here; an id is
// stored as an integer under 2^32, which on a 64-bit platform is never the
// address of a Go object (the heap lies far above), so the garbage
// collector ignores it where it scans a Kevent_t. (32-bit platforms are not
// built: there an id could fall in the heap.)
func setUdata(k *unix.Kevent_t, id uint32) {
	*(*uintptr)(unsafe.Pointer(&k.Udata)) = uintptr(id)
}

// udata returns the registration id k was tagged with.
func udata(k *unix.Kevent_t) uint32 {
	return uint32(*(*uintptr)(unsafe.Pointer(&k.Udata)))
}
