package wsconn

import "golang.org/x/sys/unix"

// unsentBytes returns the bytes in the socket's send buffer that the peer
// has not acknowledged, or 0 if that cannot be told.
func unsentBytes(fd int) int {
	n, err := unix.IoctlGetInt(fd, unix.TIOCOUTQ) // SIOCOUTQ for a socket
	if err != nil {
		return 0
	}
	return n
}

// allSent reports whether the kernel has sent every byte written to the
// socket (acknowledged or not): none waits for the peer's window.
func allSent(fd int) bool {
	n, err := unix.IoctlGetInt(fd, unix.SIOCOUTQNSD)
	return err == nil && n == 0
}
