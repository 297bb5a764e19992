package poller

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// AcceptAddr is Accept returning the peer's address as a netip.AddrPort. On
// Linux it allocates nothing (unix.Accept4 allocates a sockaddr for every
// connection), which keeps a storm of handshakes from growing the heap.
func AcceptAddr(lfd int) (int, netip.AddrPort, error) {
	for {
		var rsa unix.RawSockaddrAny
		size := uint32(unsafe.Sizeof(rsa))
		r, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&rsa)),
			uintptr(unsafe.Pointer(&size)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
		switch errno {
		case 0:
			return int(r), sockaddrAddrPort(&rsa), nil
		case unix.EINTR, unix.ECONNABORTED:
			continue
		case unix.EAGAIN:
			return -1, netip.AddrPort{}, unix.EAGAIN
		default:
			return -1, netip.AddrPort{}, fmt.Errorf("poller: accept on fd %d: %w", lfd, errno)
		}
	}
}

// PeerAddr returns the address of the peer of the connected socket fd, or
// the zero AddrPort if it has none. On Linux it allocates nothing.
func PeerAddr(fd int) netip.AddrPort {
	var rsa unix.RawSockaddrAny
	size := uint32(unsafe.Sizeof(rsa))
	_, _, errno := unix.RawSyscall(unix.SYS_GETPEERNAME, uintptr(fd), uintptr(unsafe.Pointer(&rsa)), uintptr(unsafe.Pointer(&size)))
	if errno != 0 {
		return netip.AddrPort{}
	}
	return sockaddrAddrPort(&rsa)
}

func sockaddrAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), port)
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&sa.Port))[:])
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr), port)
	}
	return netip.AddrPort{}
}
