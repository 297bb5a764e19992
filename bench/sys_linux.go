//go:build linux

package bench

import (
	"fmt"
	"net/netip"
	"os/exec"
	"runtime"

	"golang.org/x/sys/unix"
)

// connectNonblocking opens a non-blocking TCP socket, binds it to source
// (unless nil) and starts connecting it to target. Completion is signalled
// by writability; socketError then tells the outcome.
//
// The bind uses IP_BIND_ADDRESS_NO_PORT, so the port is chosen at connect
// time for the full four-tuple: each source address has the whole
// ephemeral port range for each server address.
func connectNonblocking(target, source unix.Sockaddr) (int, error) {
	domain := unix.AF_INET
	if _, ok := target.(*unix.SockaddrInet6); ok {
		domain = unix.AF_INET6
	}
	fd, err := unix.Socket(domain, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if source != nil {
		_ = unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
		if err := unix.Bind(fd, source); err != nil {
			_ = unix.Close(fd)
			return -1, fmt.Errorf("bind %s: %w", sockaddrString(source), err)
		}
	}
	_ = unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	switch err := unix.Connect(fd, target); err {
	case nil, unix.EINPROGRESS, unix.EINTR:
		return fd, nil
	default:
		_ = unix.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", sockaddrString(target), err)
	}
}

// socketError returns the pending error of a socket whose connect
// finished.
func socketError(fd int) error {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return fmt.Errorf("getsockopt SO_ERROR: %w", err)
	}
	if v != 0 {
		return fmt.Errorf("connect: %w", unix.Errno(v))
	}
	return nil
}

// maxRSSBytes converts getrusage's ru_maxrss, which Linux gives in KiB.
func maxRSSBytes(maxrss int64) int64 { return maxrss << 10 }

// startPinned starts cmd on cpus alone (all of them when cpus is empty).
// The child is forked from a thread pinned to them, so it starts with that
// affinity, every thread of it included, and a Go child sizes GOMAXPROCS to
// it: nothing is left running elsewhere, as pinning after the start would.
func startPinned(cmd *exec.Cmd, cpus cpuList) error {
	if len(cpus) == 0 {
		return cmd.Start()
	}
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: the thread, its affinity changed, ends with
		// this goroutine instead of going back to the scheduler.
		runtime.LockOSThread()
		var set unix.CPUSet
		for _, c := range cpus {
			set.Set(c)
		}
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			errc <- fmt.Errorf("pin to CPUs %s: %w", cpus.String(), err)
			return
		}
		errc <- cmd.Start()
	}()
	return <-errc
}

// sockaddrString formats a socket address for messages.
func sockaddrString(sa unix.Sockaddr) string {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)).String()
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)).String()
	}
	return fmt.Sprintf("%v", sa)
}
