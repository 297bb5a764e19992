//go:build !linux

package poller

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

// AcceptAddr is Accept returning the peer's address as a netip.AddrPort.
func AcceptAddr(lfd int) (int, netip.AddrPort, error) {
	fd, sa, err := Accept(lfd)
	if err != nil {
		return fd, netip.AddrPort{}, err
	}
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return fd, netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), nil
	case *unix.SockaddrInet6:
		return fd, netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port)), nil
	}
	return fd, netip.AddrPort{}, nil
}
