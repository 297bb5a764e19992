//go:build !386 && !arm

package poller

import "golang.org/x/sys/unix"

// evDispatch disables a filter once it has reported an event, until
// EV_ENABLE. NetBSD has it from NetBSD 10 (sys/event.h); golang.org/x/sys/unix
// does not name it there. An older kernel ignores the flag: a ready fd would
// be reported at every kevent call, and the poller would spin.
const evDispatch = 0x80

// setUdata tags k with a registration id.
func setUdata(k *unix.Kevent_t, id uint32) { k.Udata = int64(id) }

// udata returns the registration id k was tagged with.
func udata(k *unix.Kevent_t) uint32 { return uint32(k.Udata) }
