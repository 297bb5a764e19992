package wsconn

import (
	"net/netip"
	"sync"

	"golang.org/x/sys/unix"
)

// serviceUnavailable is the answer to a connection refused at accept.
var serviceUnavailable = []byte("HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")

// refuse answers an accepted socket with 503 and closes it, without ever
// registering it.
func refuse(fd int) {
	_, _ = writeAll(fd, serviceUnavailable)
	// Read what the client has sent already: closing a socket with unread
	// input resets it, and the reset can overtake the 503.
	var drain [2048]byte
	_, _ = unix.Read(fd, drain[:])
	_ = unix.Close(fd)
}

// peerCounts counts the connections held per source address, for
// Config.MaxConnectionsPerIP. A connection keeps only the slot of its
// address (Conn.peerSlot), not the address: 4 bytes, where a netip.Addr
// takes 24, and the slot stays valid after a reset, when the socket no
// longer knows its peer.
type peerCounts struct {
	mu    sync.Mutex
	slots map[netip.Addr]uint32 // address -> index in peers
	peers []peerCount
	free  []uint32 // indexes of unused entries of peers
}

type peerCount struct {
	addr netip.Addr
	n    int
}

// add counts one more connection from addr, unless limit connections from it
// are held already.
// It returns the connection's slot (index + 1, so that 0 means none), or
// 0 and false when the limit is reached.
func (pc *peerCounts) add(addr netip.Addr, limit int) (slot uint32, ok bool) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	i, found := pc.slots[addr]
	switch {
	case found && pc.peers[i].n >= limit:
		return 0, false
	case found:
	case len(pc.free) > 0:
		i = pc.free[len(pc.free)-1]
		pc.free = pc.free[:len(pc.free)-1]
	default:
		i = uint32(len(pc.peers))
		pc.peers = append(pc.peers, peerCount{})
	}
	if !found {
		if pc.slots == nil {
			pc.slots = make(map[netip.Addr]uint32)
		}
		pc.slots[addr] = i
		pc.peers[i] = peerCount{addr: addr}
	}
	pc.peers[i].n++
	return i + 1, true
}

// remove counts one connection less for the address of slot.
func (pc *peerCounts) remove(slot uint32) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	i := slot - 1
	p := &pc.peers[i]
	if p.n--; p.n > 0 {
		return
	}
	delete(pc.slots, p.addr)
	*p = peerCount{}
	if len(pc.slots) == 0 && cap(pc.peers) > 64 {
		// Give back memory after a wave of clients; maps do not shrink.
		pc.slots, pc.peers, pc.free = nil, nil, nil
		return
	}
	pc.free = append(pc.free, i)
}
