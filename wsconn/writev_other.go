//go:build !linux && !freebsd && !netbsd

package wsconn

import "golang.org/x/sys/unix"

// writev writes bufs with one writev(2). (On darwin and OpenBSD raw system
// calls are not the supported interface, and OpenBSD refuses them:
// unix.Writev goes through the C library.)
func writev(fd int, bufs [][]byte) (int, error) {
	return unix.Writev(fd, bufs)
}
