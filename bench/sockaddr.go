package bench

import (
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// sockaddr converts an address and port to a socket address.
func sockaddr(addr netip.Addr, port int) unix.Sockaddr {
	if addr.Is4() || addr.Is4In6() {
		return &unix.SockaddrInet4{Addr: addr.Unmap().As4(), Port: port}
	}
	return &unix.SockaddrInet6{Addr: addr.As16(), Port: port}
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
