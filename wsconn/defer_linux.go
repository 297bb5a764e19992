package wsconn

import "golang.org/x/sys/unix"

// deferAccept asks the kernel to hand over a connection of the listener
// lfd only once the client's first bytes (the request, or its FIN) have
// arrived, or after about a second (TCP_DEFER_ACCEPT), and reports whether
// it could. The connection's first turn then reads the request at once,
// with no turn spent finding nothing, and a client that connects and says
// nothing waits in the kernel's queue, not in the server.
func deferAccept(lfd int) bool {
	return unix.SetsockoptInt(lfd, unix.IPPROTO_TCP, unix.TCP_DEFER_ACCEPT, 1) == nil
}
