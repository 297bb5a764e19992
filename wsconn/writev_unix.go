//go:build linux || freebsd || netbsd

package wsconn

import (
	"unsafe"

	"golang.org/x/sys/unix"
)

// writev writes bufs with one writev(2). Unlike unix.Writev it builds the
// iovec array on the stack, so a flush allocates nothing however many
// frames it carries.
func writev(fd int, bufs [][]byte) (int, error) {
	var iov [maxIovecs]unix.Iovec
	n := 0
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		iov[n].Base = &b[0]
		iov[n].SetLen(len(b))
		n++
		if n == len(iov) {
			break
		}
	}
	if n == 0 {
		return 0, nil
	}
	r, _, errno := unix.Syscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(n))
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}
