//go:build !linux && !freebsd && !netbsd && !openbsd

package wsconn

import "golang.org/x/sys/unix"

// writev writes bufs with one writev(2). (On darwin raw system calls are
// not the supported interface; unix.Writev goes through libSystem.)
func writev(fd int, bufs [][]byte) (int, error) {
	return unix.Writev(fd, bufs)
}
