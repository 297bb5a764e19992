package poller

import (
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// waitTimeout bounds every wait for an event; it only matters when a test
// fails.
const waitTimeout = 10 * time.Second

func newPoller(t testing.TB) *Poller {
	t.Helper()
	p, err := New()
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, p.Close()) })
	return p
}

// socketPair returns the two ends of a connected, non-blocking stream
// socket pair; both are closed when the test ends unless closed before with
// the returned func.
func socketPair(t testing.TB) (a, b int, closeB func()) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	for _, fd := range fds {
		require.NoError(t, unix.SetNonblock(fd, true))
	}
	var once sync.Once
	closeB = func() { once.Do(func() { assert.NoError(t, unix.Close(fds[1])) }) }
	t.Cleanup(func() {
		assert.NoError(t, unix.Close(fds[0]))
		closeB()
	})
	return fds[0], fds[1], closeB
}

// recorder is a callback that queues the events it is given.
type recorder struct {
	t  testing.TB
	ch chan Event
}

func newRecorder(t testing.TB) *recorder {
	return &recorder{t: t, ch: make(chan Event, 64)}
}

// OnEvent makes a recorder a Handler.
func (r *recorder) OnEvent(ev Event) { r.cb(ev) }

func (r *recorder) cb(ev Event) {
	select {
	case r.ch <- ev:
	default:
		r.t.Error("callback storm: recorder full")
	}
}

func (r *recorder) wait() Event {
	r.t.Helper()
	select {
	case ev := <-r.ch:
		return ev
	case <-time.After(waitTimeout):
		require.FailNow(r.t, "no callback")
		return 0
	}
}

// none asserts that no callback is queued.
func (r *recorder) none() {
	r.t.Helper()
	select {
	case ev := <-r.ch:
		assert.Failf(r.t, "unexpected callback", "event %#x", ev)
	default:
	}
}

func writeByte(t testing.TB, fd int) {
	t.Helper()
	n, err := unix.Write(fd, []byte{'x'})
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

func readByte(t testing.TB, fd int) {
	t.Helper()
	var buf [1]byte
	n, err := unix.Read(fd, buf[:])
	require.NoError(t, err)
	require.Equal(t, 1, n)
}

// settle returns once every event that was pending for p when settle was
// called has been delivered. It does two round trips through a pair of its
// own: the event of the first round is collected after settle started,
// the event of the second round after the first round's callback ran, so
// when the second callback runs, the poller has finished a whole wait
// (collect, then run callbacks) that began after settle started. A
// level-triggered fd that was wrongly left armed would have been reported in
// that wait.
func settle(t testing.TB, p *Poller) {
	t.Helper()
	a, b, _ := socketPair(t)
	r := newRecorder(t)
	require.NoError(t, p.Add(a, Readable, r.cb))
	for round := range 2 {
		if round > 0 {
			require.NoError(t, p.Arm(a, Readable))
		}
		writeByte(t, b)
		require.Equal(t, Readable, r.wait()&Readable)
		readByte(t, a)
	}
	require.NoError(t, p.Del(a))
}

// TestAddHandler: a Handler hears its fd's events as a callback does, one
// per arm.
func TestAddHandler(t *testing.T) {
	p := newPoller(t)
	a, b, _ := socketPair(t)
	r := newRecorder(t)
	require.NoError(t, p.AddHandler(a, Readable, r))
	assert.ErrorIs(t, p.AddHandler(a, Readable, r), ErrRegistered)
	assert.Error(t, p.AddHandler(b, Readable, nil))

	writeByte(t, b)
	assert.Equal(t, Readable, r.wait())
	settle(t, p)
	r.none() // disarmed until Arm
	require.NoError(t, p.Arm(a, Readable))
	assert.Equal(t, Readable, r.wait())
	readByte(t, a)
	require.NoError(t, p.Del(a))
}

func TestReadableOneShotLevelTriggered(t *testing.T) {
	p := newPoller(t)
	a, b, _ := socketPair(t)
	r := newRecorder(t)
	require.NoError(t, p.Add(a, Readable, r.cb))

	settle(t, p)
	r.none() // nothing to read yet

	writeByte(t, b)
	assert.Equal(t, Readable, r.wait())

	// The byte stays unread, but the fd is disarmed until Arm.
	settle(t, p)
	r.none()

	// Level-triggered: re-armed with the byte still there, it fires again.
	require.NoError(t, p.Arm(a, Readable))
	assert.Equal(t, Readable, r.wait())

	// Once read, re-arming reports nothing.
	readByte(t, a)
	require.NoError(t, p.Arm(a, Readable))
	settle(t, p)
	r.none()

	writeByte(t, b)
	assert.Equal(t, Readable, r.wait())
}

func TestWritable(t *testing.T) {
	p := newPoller(t)
	a, _, _ := socketPair(t)
	r := newRecorder(t)

	// Armed for reading only, a writable socket reports nothing.
	require.NoError(t, p.Add(a, Readable, r.cb))
	settle(t, p)
	r.none()

	require.NoError(t, p.Arm(a, Writable))
	assert.Equal(t, Writable, r.wait())

	// One-shot: disarmed though still writable.
	settle(t, p)
	r.none()

	require.NoError(t, p.Arm(a, Writable))
	assert.Equal(t, Writable, r.wait())
}

func TestReadableAndWritableFireOnce(t *testing.T) {
	p := newPoller(t)
	a, b, _ := socketPair(t)
	writeByte(t, b)
	r := newRecorder(t)
	require.NoError(t, p.Add(a, Readable|Writable, r.cb))

	// Both are ready; one callback reports them (epoll) or one of them
	// (kqueue), and the fd is disarmed for both.
	ev := r.wait()
	assert.NotZero(t, ev&(Readable|Writable), "event %#x", ev)
	settle(t, p)
	r.none()
}

func TestHangupSocketPair(t *testing.T) {
	p := newPoller(t)
	a, _, closeB := socketPair(t)
	r := newRecorder(t)
	require.NoError(t, p.Add(a, Readable, r.cb))
	settle(t, p)
	r.none()

	closeB()
	ev := r.wait()
	assert.Equal(t, Hangup, ev&Hangup, "event %#x", ev)
}

func TestHangupTCP(t *testing.T) {
	p := newPoller(t)
	fd, peer := tcpPair(t)
	r := newRecorder(t)
	require.NoError(t, p.Add(fd, Readable, r.cb))
	settle(t, p)
	r.none()

	_, err := peer.Write([]byte("bye"))
	require.NoError(t, err)
	ev := r.wait()
	assert.Equal(t, Readable, ev&Readable, "event %#x", ev)

	// Data still unread: the hangup comes with Readable.
	require.NoError(t, peer.Close())
	require.NoError(t, p.Arm(fd, Readable))
	for range 1000 {
		ev = r.wait()
		if ev&Hangup != 0 {
			break
		}
		// The data without the FIN yet; look again.
		require.NoError(t, p.Arm(fd, Readable))
	}
	assert.Equal(t, Readable|Hangup, ev, "event %#x", ev)
}

func TestDel(t *testing.T) {
	p := newPoller(t)
	a, b, _ := socketPair(t)
	r := newRecorder(t)
	require.NoError(t, p.Add(a, Readable, r.cb))
	require.NoError(t, p.Del(a))

	writeByte(t, b)
	settle(t, p)
	r.none()

	err := p.Del(a)
	assert.ErrorIs(t, err, ErrNotRegistered)
	assert.ErrorIs(t, p.Arm(a, Readable), ErrNotRegistered)

	// The fd can be added again; the byte is still there.
	require.NoError(t, p.Add(a, Readable, r.cb))
	assert.Equal(t, Readable, r.wait())
}

func TestAddErrors(t *testing.T) {
	p := newPoller(t)
	a, _, _ := socketPair(t)
	r := newRecorder(t)
	require.NoError(t, p.Add(a, Readable, r.cb))
	assert.ErrorIs(t, p.Add(a, Readable, r.cb), ErrRegistered)
	assert.Error(t, p.Add(-1, Readable, r.cb))
	assert.Error(t, p.Add(a, Readable, nil))

	// A failed Add leaves nothing behind: the fd is not registered.
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	require.NoError(t, err)
	require.NoError(t, unix.Close(fds[0]))
	require.NoError(t, unix.Close(fds[1]))
	assert.Error(t, p.Add(fds[0], Readable, r.cb), "closed fd")
	assert.ErrorIs(t, p.Del(fds[0]), ErrNotRegistered)
}

func TestClose(t *testing.T) {
	p, err := New()
	require.NoError(t, err)
	a, _, _ := socketPair(t)
	var calls atomic.Int32
	require.NoError(t, p.Add(a, Writable, func(Event) { calls.Add(1) }))
	require.Eventually(t, func() bool { return calls.Load() == 1 }, waitTimeout, time.Millisecond)

	// easygo tells every registered callback that it is closing; that must
	// not reach ours.
	require.NoError(t, p.Close())
	assert.Equal(t, int32(1), calls.Load())

	assert.NoError(t, p.Close(), "Close is idempotent")
	assert.ErrorIs(t, p.Arm(a, Writable), ErrClosed)
	assert.ErrorIs(t, p.Del(a), ErrClosed)
	b, _, _ := socketPair(t)
	assert.ErrorIs(t, p.Add(b, Readable, func(Event) {}), ErrClosed)
}

// TestCloseStopsCallbacks closes the poller while callbacks keep firing,
// re-arming themselves: none may run once Close has returned.
func TestCloseStopsCallbacks(t *testing.T) {
	p, err := New()
	require.NoError(t, err)

	const pairs = 16
	var (
		returned   atomic.Bool // Close has returned
		calls      atomic.Int64
		afterClose atomic.Int64
	)
	for range pairs {
		a, _, _ := socketPair(t)
		require.NoError(t, p.Add(a, Writable, func(Event) {
			if returned.Load() {
				afterClose.Add(1)
			}
			calls.Add(1)
			// Always writable: re-arming makes it fire again at once.
			// Fails with ErrClosed once closed; that is expected.
			_ = p.Arm(a, Writable)
		}))
	}
	require.Eventually(t, func() bool { return calls.Load() > 10*pairs }, waitTimeout, time.Millisecond)

	require.NoError(t, p.Close())
	returned.Store(true)
	n := calls.Load()
	// Give a stray callback the chance to show. This can only let a bug go
	// unnoticed, never fail a correct poller.
	time.Sleep(10 * time.Millisecond)
	assert.Zero(t, afterClose.Load())
	assert.Equal(t, n, calls.Load())
}

func TestListenerReadable(t *testing.T) {
	p := newPoller(t)
	ln, lfd := listen(t)
	r := newRecorder(t)
	require.NoError(t, p.Add(lfd, Readable, r.cb))
	t.Cleanup(func() { assert.NoError(t, p.Del(lfd)) })

	settle(t, p)
	r.none()

	conn, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer conn.Close()

	assert.Equal(t, Readable, r.wait()&Readable)
	fd, _, err := Accept(lfd)
	require.NoError(t, err)
	assert.NoError(t, unix.Close(fd))
}

// BenchmarkArmAndWake measures one turn: a byte written to one end of a
// socket pair, the callback on the other end, the read, and the re-arm.
func BenchmarkArmAndWake(b *testing.B) {
	p := newPoller(b)
	a, w, _ := socketPair(b)
	woke := make(chan struct{}, 1)
	require.NoError(b, p.Add(a, Readable, func(Event) { woke <- struct{}{} }))
	buf := []byte{'x'}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := unix.Write(w, buf); err != nil {
			b.Fatal(err)
		}
		<-woke
		if _, err := unix.Read(a, buf); err != nil {
			b.Fatal(err)
		}
		if err := p.Arm(a, Readable); err != nil {
			b.Fatal(err)
		}
	}
}
