//go:build linux || freebsd

package poller

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// Accept accepts one pending connection on the non-blocking listening socket
// lfd and returns its fd, which is non-blocking and close-on-exec, and the
// peer's address. The caller owns fd and must close it.
//
// It returns unix.EAGAIN itself (not wrapped) when no connection is pending;
// other errors are wrapped. Connections aborted before they were accepted are
// skipped.
func Accept(lfd int) (fd int, sa unix.Sockaddr, err error) {
	for {
		// accept4 sets both flags atomically: no window in which a
		// concurrent fork+exec could inherit the fd.
		fd, sa, err = unix.Accept4(lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		switch err {
		case nil:
			return fd, sa, nil
		case unix.EINTR, unix.ECONNABORTED:
			continue
		case unix.EAGAIN:
			return -1, nil, unix.EAGAIN
		default:
			return -1, nil, fmt.Errorf("poller: accept on fd %d: %w", lfd, err)
		}
	}
}
