//go:build darwin || freebsd

package poller

import (
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/mailru/easygo/netpoll"
	"golang.org/x/sys/unix"
)

// Poller is a reactor over raw file descriptors: level-triggered, one-shot.
// After a callback runs for fd, fd is disarmed until Arm is called again, so
// one fd is served by one worker at a time.
//
// Callbacks run one at a time on the poller's own goroutine. Add, Arm and Del
// are safe for concurrent use, including from callbacks and from workers.
// Once the poller is closed they return an error that wraps
// netpoll.ErrClosed.
//
// On kqueue, hangup is reported through the read and write filters (EV_EOF),
// so an fd armed for neither Readable nor Writable reports nothing.
//
// The poller keeps, per fd, the callback (in easygo's fd-to-callback map), a
// small adapter around it and one bit; the fd itself is used as is, never
// duplicated and never switched to blocking mode.
type Poller struct {
	kq *netpoll.Kqueue

	// mu is held shared by Add, Arm, Del and the callbacks, and exclusively
	// to grow disarmed and to mark the poller closed, so that no kevent
	// call races with Close (which closes the kqueue fd).
	mu     sync.RWMutex
	closed bool

	// disarmed holds one bit per fd, set when an event for fd has been
	// delivered and cleared by Arm. kqueue arms the read and write filters
	// separately, each one-shot: with both armed, both can fire, even in
	// the same kevent batch. The bit lets only the first through, which
	// gives epoll's EPOLLONESHOT semantics across filters. An event it
	// drops is not lost: the filters are level-triggered, and the Arm that
	// must follow re-adds them, which reports a still-ready fd again.
	// Words are updated atomically under mu held shared.
	disarmed []uint64

	// The write end of a pipe whose read end is registered with kq: Close
	// writes to it to stop the wait goroutine (see stopWait).
	wakeR, wakeW int

	// done is closed on the wait goroutine when it stops for good, by
	// stopWait or onWaitError; waitErr is written before that.
	done    chan struct{}
	waitErr error

	closeOnce sync.Once
	closeErr  error
}

// New creates a poller and starts its goroutine. Call Close to stop it.
func New() (p *Poller, err error) {
	p = &Poller{done: make(chan struct{})}
	var wake [2]int
	syscall.ForkLock.RLock()
	err = unix.Pipe(wake[:])
	if err == nil {
		unix.CloseOnExec(wake[0])
		unix.CloseOnExec(wake[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return nil, fmt.Errorf("poller: wake pipe: %w", err)
	}
	p.wakeR, p.wakeW = wake[0], wake[1]
	defer func() {
		if err != nil {
			unix.Close(p.wakeR)
			unix.Close(p.wakeW)
		}
	}()
	if err = unix.SetNonblock(p.wakeW, true); err != nil {
		return nil, fmt.Errorf("poller: wake pipe: %w", err)
	}

	kq, err := netpoll.KqueueCreate(&netpoll.KqueueConfig{OnWaitError: p.onWaitError})
	if err != nil {
		return nil, fmt.Errorf("poller: kqueue create: %w", err)
	}
	p.kq = kq
	wakeEv := netpoll.Kevents{{Filter: netpoll.EVFILT_READ, Flags: netpoll.EV_ADD}}
	if err = kq.Add(p.wakeR, wakeEv, 1, p.stopWait); err != nil {
		// The wait goroutine cannot be stopped without the pipe; it stays
		// blocked on an empty kqueue.
		return nil, fmt.Errorf("poller: register wake pipe: %w", err)
	}
	return p, nil
}

// stopWait is the callback of the wake pipe; it runs on the wait goroutine
// once Close has written to the pipe.
//
// easygo's Kqueue.Close does nothing (it is a TODO there): its wait
// goroutine would keep running callbacks. runtime.Goexit ends that goroutine
// here, between two callbacks, and runs its deferred cleanup, which closes
// the kqueue fd.
func (p *Poller) stopWait(netpoll.Kevent) {
	close(p.done)
	runtime.Goexit()
}

// onWaitError runs on the wait goroutine when kevent fails for good (the
// goroutine then exits), or when closing the kqueue fd fails.
func (p *Poller) onWaitError(err error) {
	select {
	case <-p.done:
		// Closing the kqueue fd after stopWait; nobody is left to tell.
	default:
		p.waitErr = err
		close(p.done)
	}
}

// Add registers fd and arms it for ev (Readable and/or Writable; Hangup is
// always reported).
//
// cb runs on the poller's own goroutine: it must not block (hand work to a
// Pool), and it must not call Close. cb may still be called once after Del
// returns (a late event); callers guard with their own closed flag.
func (p *Poller) Add(fd int, ev Event, cb func(Event)) error {
	if cb == nil {
		return fmt.Errorf("poller: add fd %d: nil callback", fd)
	}
	if fd < 0 {
		return fmt.Errorf("poller: add fd %d: %w", fd, unix.EBADF)
	}
	// Exclusive: disarmed may grow.
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return fmt.Errorf("poller: add fd %d: %w", fd, netpoll.ErrClosed)
	}
	if w := fd / 64; w >= len(p.disarmed) {
		grown := make([]uint64, max(w+1, 2*len(p.disarmed)))
		copy(grown, p.disarmed)
		p.disarmed = grown
	}

	var kevs netpoll.Kevents
	n := addKevents(&kevs, ev)
	err := p.kq.Add(fd, kevs, n, func(k netpoll.Kevent) {
		var ev Event
		switch k.Filter {
		case netpoll.EVFILT_READ:
			ev = Readable
		case netpoll.EVFILT_WRITE:
			ev = Writable
		default:
			return
		}
		if k.Flags&(netpoll.EV_EOF|netpoll.EV_ERROR) != 0 {
			ev |= Hangup
		}
		if p.disarm(fd) {
			cb(ev)
		}
	})
	if err != nil {
		if err != netpoll.ErrRegistered && err != netpoll.ErrClosed {
			// easygo keeps the callback when kevent fails; drop it, or
			// fd could never be added again.
			_ = p.kq.Del(fd)
		}
		return fmt.Errorf("poller: add fd %d: %w", fd, err)
	}
	// Arm fd's bit (Del leaves it set). An event that fired since kq.Add
	// waits in disarm for mu, which Add holds exclusively, so it sees the
	// bit cleared.
	p.disarmed[fd/64] &^= uint64(1) << (fd % 64)
	return nil
}

// disarm marks fd disarmed and reports whether it was armed, that is,
// whether the event at hand is the first since the last Arm.
func (p *Poller) disarm(fd int) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return false
	}
	bit := uint64(1) << (fd % 64)
	return atomic.OrUint64(&p.disarmed[fd/64], bit)&bit == 0
}

// Arm re-arms fd (one-shot) for ev. It is called by whoever serves fd, once
// it is done with its turn; if fd is still ready for ev, the callback fires
// again at once.
func (p *Poller) Arm(fd int, ev Event) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return fmt.Errorf("poller: arm fd %d: %w", fd, netpoll.ErrClosed)
	}
	if fd < 0 || fd/64 >= len(p.disarmed) {
		return fmt.Errorf("poller: arm fd %d: %w", fd, netpoll.ErrNotRegistered)
	}
	// Clear the bit before adding the filters: an event that fires in
	// between is then delivered rather than dropped and lost.
	atomic.AndUint64(&p.disarmed[fd/64], ^(uint64(1) << (fd % 64)))

	// The wanted filters are added, one-shot and level-triggered (no
	// EV_CLEAR), and the others deleted, so that a filter armed by an
	// earlier Arm does not fire now. Deletions go last and one per call:
	// deleting a one-shot filter that has fired fails with ENOENT, and
	// kevent stops at the first failing change.
	var kevs netpoll.Kevents
	n := addKevents(&kevs, ev)
	for _, f := range [...]struct {
		ev     Event
		filter netpoll.KeventFilter
	}{{Readable, netpoll.EVFILT_READ}, {Writable, netpoll.EVFILT_WRITE}} {
		if ev&f.ev != 0 {
			continue
		}
		kevs[n] = netpoll.Kevent{Filter: f.filter, Flags: netpoll.EV_DELETE}
		n++
		if err := p.kq.Mod(fd, kevs, n); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("poller: arm fd %d: %w", fd, err)
		}
		n = 0
	}
	if n > 0 {
		if err := p.kq.Mod(fd, kevs, n); err != nil {
			return fmt.Errorf("poller: arm fd %d: %w", fd, err)
		}
	}
	return nil
}

// Del unregisters fd. Call it before closing fd: the kernel forgets a closed
// fd on its own, but the poller would keep its callback.
func (p *Poller) Del(fd int) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return fmt.Errorf("poller: del fd %d: %w", fd, netpoll.ErrClosed)
	}
	// easygo's Kqueue.Del forgets the callback only; the filters must be
	// deleted here. One change per call: kevent stops at the first failing
	// change, and deleting a one-shot filter that has fired fails with
	// ENOENT.
	for _, filter := range [...]netpoll.KeventFilter{netpoll.EVFILT_READ, netpoll.EVFILT_WRITE} {
		del := netpoll.Kevents{{Filter: filter, Flags: netpoll.EV_DELETE}}
		err := p.kq.Mod(fd, del, 1)
		if errors.Is(err, unix.EBADF) {
			break // fd was closed first: the kernel has dropped its filters
		}
		if err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("poller: del fd %d: %w", fd, err)
		}
	}
	if err := p.kq.Del(fd); err != nil {
		return fmt.Errorf("poller: del fd %d: %w", fd, err)
	}
	// Drop the late events that can still be in flight for fd.
	atomic.OrUint64(&p.disarmed[fd/64], uint64(1)<<(fd%64))
	return nil
}

// Close stops the poller; no callback runs after Close returns. It waits for
// a callback that is running, so it must not be called from a callback.
// Registered fds are not closed. Close is idempotent: later calls return nil.
func (p *Poller) Close() error {
	p.closeOnce.Do(func() {
		p.mu.Lock()
		p.closed = true
		p.mu.Unlock()

		if _, err := unix.Write(p.wakeW, []byte{0}); err != nil {
			p.closeErr = fmt.Errorf("poller: close: wake: %w", err)
			return
		}
		<-p.done
		unix.Close(p.wakeR)
		unix.Close(p.wakeW)
		if p.waitErr != nil {
			p.closeErr = fmt.Errorf("poller: wait: %w", p.waitErr)
		}
	})
	return p.closeErr
}

// addKevents fills kevs with the changes that add the filters for ev,
// one-shot and level-triggered, and returns their number.
func addKevents(kevs *netpoll.Kevents, ev Event) int {
	const add = netpoll.EV_ADD | netpoll.EV_ONESHOT
	n := 0
	if ev&Readable != 0 {
		kevs[n] = netpoll.Kevent{Filter: netpoll.EVFILT_READ, Flags: add}
		n++
	}
	if ev&Writable != 0 {
		kevs[n] = netpoll.Kevent{Filter: netpoll.EVFILT_WRITE, Flags: add}
		n++
	}
	return n
}
