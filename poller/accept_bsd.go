//go:build netbsd || openbsd

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
		// golang.org/x/sys/unix has no Accept4 here; package syscall has
		// (paccept on NetBSD, accept4 through libc on OpenBSD), and sets
		// both flags atomically.
		fd, ssa, err := syscall.Accept4(lfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		switch err {
		case nil:
			return fd, fromSyscall(ssa), nil
		case syscall.EINTR, syscall.ECONNABORTED:
			continue
		case syscall.EAGAIN:
			return -1, nil, unix.EAGAIN
		default:
			return -1, nil, fmt.Errorf("poller: accept on fd %d: %w", lfd, err)
		}
	}
}

// fromSyscall converts a package syscall address to its
// golang.org/x/sys/unix twin.
func fromSyscall(sa syscall.Sockaddr) unix.Sockaddr {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return &unix.SockaddrInet4{Port: sa.Port, Addr: sa.Addr}
	case *syscall.SockaddrInet6:
		return &unix.SockaddrInet6{Port: sa.Port, ZoneId: sa.ZoneId, Addr: sa.Addr}
	case *syscall.SockaddrUnix:
		return &unix.SockaddrUnix{Name: sa.Name}
	}
	return nil
}
