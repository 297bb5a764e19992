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
	return fd, addrPort(sa), nil
}

// PeerAddr returns the address of the peer of the connected socket fd, or
// the zero AddrPort if it has none.
func PeerAddr(fd int) netip.AddrPort {
	sa, err := unix.Getpeername(fd)
	if err != nil {
		return netip.AddrPort{}
	}
	return addrPort(sa)
}

func addrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr), uint16(a.Port))
	}
	return netip.AddrPort{}
}
