package poller

import (
	"fmt"
	"syscall"

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
		// darwin has no accept4. Hold the fork lock, as package net does,
		// so that no fork+exec inherits fd before it is close-on-exec.
		syscall.ForkLock.RLock()
		fd, sa, err = unix.Accept(lfd)
		if err == nil {
			unix.CloseOnExec(fd)
		}
		syscall.ForkLock.RUnlock()
		switch err {
		case nil:
		case unix.EINTR, unix.ECONNABORTED:
			continue
		case unix.EAGAIN:
			return -1, nil, unix.EAGAIN
		default:
			return -1, nil, fmt.Errorf("poller: accept on fd %d: %w", lfd, err)
		}
		if err = unix.SetNonblock(fd, true); err != nil {
			unix.Close(fd)
			return -1, nil, fmt.Errorf("poller: accept on fd %d: set non-blocking: %w", lfd, err)
		}
		return fd, sa, nil
	}
}
