//go:build !linux

package bench

import (
	"errors"
	"os/exec"

	"golang.org/x/sys/unix"
)

// errUnsupported is returned where the load clients need Linux.
var errUnsupported = errors.New("bench: the load clients run on Linux only")

// connectNonblocking is Linux-only; elsewhere it fails.
func connectNonblocking(target, source unix.Sockaddr) (int, error) {
	return -1, errUnsupported
}

// socketError is Linux-only; elsewhere it fails.
func socketError(fd int) error { return errUnsupported }

// maxRSSBytes converts getrusage's ru_maxrss, which BSDs give in bytes.
func maxRSSBytes(maxrss int64) int64 { return maxrss }

// startPinned starts cmd; pinning it to cpus is Linux-only.
func startPinned(cmd *exec.Cmd, cpus cpuList) error {
	if len(cpus) > 0 {
		return errors.New("bench: --server-cpus and --client-cpus need Linux")
	}
	return cmd.Start()
}
