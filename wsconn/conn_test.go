package wsconn

import (
	"net/netip"
	"runtime"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"golang.org/x/sys/unix"
)

// TestConnSize guards the memory of an idle connection, the figure the
// product is measured by: a Conn must stay within the 160-byte size class
// of the allocator. A field that pushes it over costs 16 bytes more per
// connection; find the bytes elsewhere.
func TestConnSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the budget is for 64-bit platforms")
	}
	var c Conn
	assert.LessOrEqual(t, unsafe.Sizeof(c), uintptr(160), "size of Conn")
}

// TestOpenAllocatesTwo: opening a connection allocates the Conn and the
// poller's adapter, and nothing else that lives as long (a method value as
// the poller's callback was a third object per connection).
func TestOpenAllocatesTwo(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the count is the epoll poller's")
	}
	s, _ := serveConfig(t, Config{Upgrade: func(*Request) (Handler, error) { return Echo{}, nil }})
	allocs := testing.AllocsPerRun(100, func() {
		fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		if err := unix.SetNonblock(fds[0], true); err != nil {
			t.Fatal(err)
		}
		c := s.open(fds[0], netip.Addr{})
		if c == nil {
			t.Fatal("refused")
		}
		c.release() // closes fds[0]; a turn's to call, but none can run: nothing was written to fds[1]
		_ = unix.Close(fds[1])
	})
	assert.LessOrEqual(t, allocs, 2.0)
}
