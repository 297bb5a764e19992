package bench

import (
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
