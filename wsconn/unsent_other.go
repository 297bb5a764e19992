//go:build !linux

package wsconn

// unsentBytes returns 0: the kernel's send queue is only asked on Linux, and
// elsewhere a timed-out connection is reset only if its own queue holds
// data.
func unsentBytes(int) int { return 0 }

// allSent reports false: it cannot be told, so a connection whose close
// frame answers the peer's half-closes and waits, as any closing one does.
func allSent(int) bool { return false }
