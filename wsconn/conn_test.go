package wsconn

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"slices"
	"testing"
	"time"
	"unsafe"

	"github.com/gobwas/ws"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestConnSize guards the memory of an idle connection, the figure the
// product is measured by: a Conn must stay within the 128-byte size class
// of the allocator (160 until the Reader counted in 32 bits, 144 until the
// booleans became flags and the registry was keyed by fd). A field that
// pushes it over costs 16 bytes more per connection; find the bytes
// elsewhere.
func TestConnSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the budget is for 64-bit platforms")
	}
	var c Conn
	assert.LessOrEqual(t, unsafe.Sizeof(c), uintptr(128), "size of Conn")
}

// TestOpenAllocatesTwo: opening a connection allocates the Conn and the
// poller's adapter, and nothing else that lives as long (a method value as
// the poller's callback was a third object per connection), whether the fd
// joins the poller at the accept or when the first turn ends (deferred).
func TestOpenAllocatesTwo(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the count is the epoll poller's")
	}
	s, _ := serveConfig(t, Config{Upgrade: func(*Request) (Handler, error) { return Echo{}, nil }})
	registered := func(c *Conn) bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return c.is(flagRegistered) && c.sched.Load() == turnIdle
	}
	for _, deferred := range []bool{false, true} {
		allocs := testing.AllocsPerRun(100, func() {
			fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
			if err != nil {
				t.Fatal(err)
			}
			if err := unix.SetNonblock(fds[0], true); err != nil {
				t.Fatal(err)
			}
			c := s.open(fds[0], netip.Addr{}, deferred)
			if c == nil {
				t.Fatal("refused")
			}
			for !registered(c) { // deferred: the first turn, whose read finds nothing
				runtime.Gosched()
			}
			c.release() // closes fds[0]; a turn's to call, but none can run: nothing was written to fds[1]
			_ = unix.Close(fds[1])
		})
		assert.LessOrEqual(t, allocs, 2.0, "deferred %v", deferred)
	}
}

// TestFirstTurnBeforeRegistration: a request that is there at the accept
// is answered by the first turn, before the fd joins the poller; one that
// the first turn reads only a part of is finished once the poller reports
// the rest.
func TestFirstTurnBeforeRegistration(t *testing.T) {
	_, addr := serveHandler(t, Echo{})
	nc, br := dialOpening(t, addr) // the request is written at once
	require.NoError(t, ws.WriteFrame(nc, ws.MaskFrame(ws.NewTextFrame([]byte("hi")))))
	assert.Equal(t, []string{"hi"}, readTexts(t, br, 1))

	slow, err := net.DialTimeout("tcp", addr, 5*time.Second)
	require.NoError(t, err)
	t.Cleanup(func() { _ = slow.Close() })
	_, err = io.WriteString(slow, "GET /ws HTTP/1.1\r\nHost: x\r\n")
	require.NoError(t, err)
	time.Sleep(50 * time.Millisecond) // the first turn reads this much
	_, err = io.WriteString(slow, "Upgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, slow.SetReadDeadline(time.Now().Add(10*time.Second)))
	resp, err := http.ReadResponse(bufio.NewReader(slow), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
}

// TestRegistryByFd: the registry finds each connection by its fd number,
// walks only the live ones, and gives back its slices as they empty.
func TestRegistryByFd(t *testing.T) {
	s := &Server{log: slog.New(slog.DiscardHandler)}
	fds := []int32{3, 4, 19, 35, 1000, 1001}
	var conns []*Conn
	for _, fd := range fds {
		c := &Conn{fd: fd}
		conns = append(conns, c)
		s.remember(c)
	}
	walked := func() []int32 {
		var got []int32
		s.each(func(c *Conn) { got = append(got, c.fd) })
		slices.Sort(got)
		return got
	}
	assert.Equal(t, fds, walked())
	assert.EqualValues(t, len(fds), s.connections.Load())

	s.forget(conns[4])
	s.forget(conns[5])
	assert.Equal(t, []int32{3, 4, 19, 35}, walked())
	r, _ := s.shard(conns[5])
	assert.Empty(t, r.conns, "fd 1001's shard keeps no empty slots at its end")
	r, _ = s.shard(conns[0])
	assert.Len(t, r.conns, 3, "fd 3's shard holds fds 3, 19 and 35")
	s.forget(conns[2]) // fd 19, between 3 and 35
	assert.Len(t, r.conns, 3)
	assert.Equal(t, []int32{3, 4, 35}, walked())
	s.remember(conns[2])

	// A wave of closes gives the memory back.
	var wave []*Conn
	for fd := int32(2000); fd < 4000; fd++ {
		c := &Conn{fd: fd}
		wave = append(wave, c)
		s.remember(c)
	}
	for _, c := range wave {
		s.forget(c)
	}
	for i := range s.registry {
		assert.LessOrEqual(t, cap(s.registry[i].conns), 64, "shard %d", i)
	}
	assert.Equal(t, []int32{3, 4, 19, 35}, walked())

	// The number of a closed fd is reused at once by accept.
	s.forget(conns[0])
	again := &Conn{fd: 3}
	s.remember(again)
	assert.Equal(t, []int32{3, 4, 19, 35}, walked())
	assert.EqualValues(t, 4, s.connections.Load())
}

// TestDeadlineNeverEarly: a deadline is never found passed before its
// duration has passed, whatever the fraction of a tick (a millisecond) at
// which it was set and at which the sweep reads the clock.
func TestDeadlineNeverEarly(t *testing.T) {
	started := time.Unix(1_000_000, 0)
	var now time.Time
	s := &Server{started: started, now: func() time.Time { return now }}
	for _, d := range []time.Duration{500 * time.Millisecond, 1500 * time.Microsecond, 0} {
		for _, set := range []time.Duration{100 * time.Millisecond, 100*time.Millisecond + 900*time.Microsecond, 999 * time.Microsecond} {
			now = started.Add(set)
			deadline := s.deadlineAfter(d)
			for _, early := range []time.Duration{time.Microsecond, 100 * time.Microsecond} {
				if d < early {
					continue
				}
				assert.False(t, passed(s.tickAt(now.Add(d-early)), deadline),
					"a %v deadline set at %v passed %v early", d, set, early)
			}
			assert.True(t, passed(s.tickAt(now.Add(d+2*time.Millisecond)), deadline),
				"a %v deadline set at %v not passed 2 ms late", d, set)
		}
	}
	// A timeout of weeks is capped, and never wraps around to passed for
	// a sweep whose tick lags the clock (found in review: 2^31 ticks ahead
	// looked passed to a tick 1 ms behind).
	now = started.Add(time.Hour)
	deadline := s.deadlineAfter(100 * 24 * time.Hour)
	for _, lag := range []time.Duration{0, time.Millisecond, time.Second, time.Hour} {
		assert.False(t, passed(s.tickAt(now.Add(-lag)), deadline), "a 100-day deadline passed for a tick %v behind", lag)
	}
}
