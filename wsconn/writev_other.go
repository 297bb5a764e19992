//go:build !linux

package wsconn

import "golang.org/x/sys/unix"

// writev writes bufs with one writev(2).
func writev(fd int, bufs [][]byte) (int, error) {
	return unix.Writev(fd, bufs)
}

// unsentBytes returns 0: the kernel's send queue is only asked on Linux, and
// elsewhere a timed-out connection is reset only if its own queue holds
// data.
func unsentBytes(int) int { return 0 }
