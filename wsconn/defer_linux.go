package wsconn

import "golang.org/x/sys/unix"

// deferAccept asks the kernel to hand over a connection of the listener
// lfd only once its first bytes (the request) have arrived, for up to a
// second (TCP_DEFER_ACCEPT): the connection's first turn then reads its
// request at once, with no turn spent finding nothing, and a client that
// connects and says nothing waits in the kernel, not in the server.
func deferAccept(lfd int) {
	_ = unix.SetsockoptInt(lfd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 1)
}
