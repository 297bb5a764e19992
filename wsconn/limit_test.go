package wsconn

import (
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPeerCounts checks the per-address counts of MaxConnectionsPerIP: the
// limit holds per address, slots are released and reused, and the table
// gives its memory back once every address is gone.
func TestPeerCounts(t *testing.T) {
	var pc peerCounts
	a, b := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("2001:db8::1")

	a1, ok := pc.add(a, 2)
	require.True(t, ok)
	a2, ok := pc.add(a, 2)
	require.True(t, ok)
	assert.Equal(t, a1, a2, "one slot per address")
	_, ok = pc.add(a, 2)
	assert.False(t, ok, "third connection from a over the limit of 2")
	b1, ok := pc.add(b, 2)
	require.True(t, ok, "another address is not limited by a's count")
	assert.NotEqual(t, a1, b1)

	pc.remove(a1)
	_, ok = pc.add(a, 2)
	assert.True(t, ok, "a's count went down")
	pc.remove(a1)
	pc.remove(a2)
	assert.NotContains(t, pc.slots, a, "an address without connections is forgotten")
	pc.remove(b1)
	assert.Empty(t, pc.slots)

	// Slots of forgotten addresses are reused, and a big table is dropped
	// once empty.
	var slots []uint32
	for i := range 100 {
		s, ok := pc.add(netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), 1)
		require.True(t, ok)
		slots = append(slots, s)
	}
	assert.LessOrEqual(t, len(pc.peers), 100)
	for _, s := range slots {
		pc.remove(s)
	}
	assert.Empty(t, pc.slots)
	assert.Nil(t, pc.peers, "memory given back after a wave")
}
