//go:build !linux

package wsconn

import "golang.org/x/sys/unix"

// writev writes bufs with one writev(2).
func writev(fd int, bufs [][]byte) (int, error) {
	return unix.Writev(fd, bufs)
}
