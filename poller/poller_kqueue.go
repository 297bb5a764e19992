//go:build (darwin || freebsd || netbsd || openbsd) && !386 && !arm

package poller

import (
	"errors"
	"fmt"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Poller is a reactor over raw file descriptors: level-triggered, one-shot.
// After a callback runs for fd, fd is disarmed until Arm is called again, so
// one fd is served by one worker at a time.
//
// Callbacks run one at a time on the poller's own goroutine. Add, Arm and Del
// are safe for concurrent use, including from callbacks and from workers.
// Once the poller is closed they return an error that wraps ErrClosed.
//
// On kqueue, hangup is reported through the read and write filters (EV_EOF),
// so an fd armed for neither Readable nor Writable reports nothing.
//
// Both filters of an fd are registered at Add, each with EV_DISPATCH: once
// it reports, the kernel disables it until Arm enables it again. Each
// registration carries an id of its own in udata, so that an event of an
// fd deleted and added again is not taken for one of the new registration
// (see registry). The poller keeps 16 bytes per fd number and the caller's
// callback; the fd itself is used as is, never duplicated and never
// switched to blocking mode.
//
// It is written on golang.org/x/sys/unix rather than on easygo's Kqueue,
// which builds on neither NetBSD nor OpenBSD, cannot be closed, and has no
// way to tell two registrations of one fd number apart.
type Poller struct {
	kq  int
	reg registry

	// mu is held shared by Add, Arm and Del around their kevent calls, and
	// exclusively by Close to mark the poller closed, so that none of
	// them calls kevent on the kqueue fd once Close may close it.
	mu     sync.RWMutex
	closed bool

	// The write end of a pipe whose read end is registered with kq, with
	// id 0: Close writes to it to stop the wait goroutine.
	wakeR, wakeW int

	// done is closed by the wait goroutine when it stops; waitErr is
	// written before that.
	done    chan struct{}
	waitErr error

	closeOnce sync.Once
	closeErr  error
}

// New creates a poller and starts its goroutine. Call Close to stop it.
func New() (p *Poller, err error) {
	p = &Poller{done: make(chan struct{})}
	var wake [2]int
	// Hold the fork lock, as package net does, so that no fork+exec
	// inherits the pipe before it is close-on-exec.
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

	// A kqueue is not inherited by a child process; no close-on-exec is
	// needed.
	if p.kq, err = unix.Kqueue(); err != nil {
		return nil, fmt.Errorf("poller: kqueue: %w", err)
	}
	var wakeEv [1]unix.Kevent_t
	unix.SetKevent(&wakeEv[0], p.wakeR, unix.EVFILT_READ, unix.EV_ADD)
	setUdata(&wakeEv[0], 0)
	if _, err = unix.Kevent(p.kq, wakeEv[:], nil, nil); err != nil {
		unix.Close(p.kq)
		return nil, fmt.Errorf("poller: register wake pipe: %w", err)
	}
	go p.wait()
	return p, nil
}

// maxWaitEvents bounds the batch one kevent call collects; the batch
// starts smaller and grows while calls fill it.
const maxWaitEvents = 1 << 15

// wait is the poller's goroutine: it collects events and runs the
// callbacks of those registrations take lets through.
func (p *Poller) wait() {
	defer close(p.done)
	evs := make([]unix.Kevent_t, 1<<8)
	for {
		n, err := unix.Kevent(p.kq, nil, evs, nil)
		if err != nil {
			if err == unix.EINTR {
				continue
			}
			p.waitErr = err
			return
		}
		for i := range evs[:n] {
			k := &evs[i]
			fd, id := int(k.Ident), udata(k)
			if id == 0 && fd == p.wakeR {
				return // Close
			}
			var ev Event
			switch int(k.Filter) {
			case unix.EVFILT_READ:
				ev = Readable
			case unix.EVFILT_WRITE:
				ev = Writable
			default:
				continue
			}
			if int(k.Flags)&(unix.EV_EOF|unix.EV_ERROR) != 0 {
				ev |= Hangup
			}
			if cb, ok := p.reg.take(fd, id, ev); ok {
				cb(ev)
			}
		}
		if n == len(evs) && 2*n <= maxWaitEvents {
			evs = make([]unix.Kevent_t, 2*n)
		}
	}
}

// Add registers fd and arms it for ev (Readable and/or Writable; Hangup is
// always reported), with cb as its Handler (see AddHandler).
func (p *Poller) Add(fd int, ev Event, cb func(Event)) error {
	if cb == nil {
		return fmt.Errorf("poller: add fd %d: nil callback", fd)
	}
	return p.add(fd, ev, cb)
}

// AddHandler registers fd and arms it for ev (Readable and/or Writable;
// Hangup is always reported).
//
// h.OnEvent runs on the poller's own goroutine: it must not block (hand
// work to a Pool), and it must not call Close. It may still be called once
// after Del returns, for an event taken just before (callers guard with
// their own closed flag), but never for one the poller gets to after Del:
// those belong to the registration deleted, and are dropped even when fd
// has been added again.
func (p *Poller) AddHandler(fd int, ev Event, h Handler) error {
	if h == nil {
		return fmt.Errorf("poller: add fd %d: nil handler", fd)
	}
	return p.add(fd, ev, h.OnEvent)
}

func (p *Poller) add(fd int, ev Event, cb func(Event)) error {
	if fd < 0 {
		return fmt.Errorf("poller: add fd %d: %w", fd, unix.EBADF)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return fmt.Errorf("poller: add fd %d: %w", fd, ErrClosed)
	}
	// Registered first: an event the kernel collects as soon as the
	// filters are added must find the registration armed.
	id, err := p.reg.add(fd, ev, cb)
	if err != nil {
		return fmt.Errorf("poller: add fd %d: %w", fd, err)
	}
	changes := kevents(fd, ev, id)
	if _, err := unix.Kevent(p.kq, changes[:], nil, nil); err != nil {
		_ = p.reg.del(fd)
		// kevent stops at the first change that fails: the read filter
		// may have been added alone. Nothing is reported for it (its id
		// is gone), and closing fd drops it.
		return fmt.Errorf("poller: add fd %d: %w", fd, err)
	}
	return nil
}

// Arm re-arms fd (one-shot) for ev. It is called by whoever serves fd, once
// it is done with its turn; if fd is still ready for ev, the callback fires
// again at once.
func (p *Poller) Arm(fd int, ev Event) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return fmt.Errorf("poller: arm fd %d: %w", fd, ErrClosed)
	}
	id, err := p.reg.arm(fd, ev)
	if err != nil {
		return fmt.Errorf("poller: arm fd %d: %w", fd, err)
	}
	changes := kevents(fd, ev, id)
	if _, err := unix.Kevent(p.kq, changes[:], nil, nil); err != nil {
		return fmt.Errorf("poller: arm fd %d: %w", fd, err)
	}
	return nil
}

// Del unregisters fd. Call it before closing fd: the kernel forgets a closed
// fd on its own, but the poller would keep its callback. Del must not run
// concurrently with Arm of the same fd (whoever serves fd calls both): an
// Arm between the two would add the filters again.
func (p *Poller) Del(fd int) error {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return fmt.Errorf("poller: del fd %d: %w", fd, ErrClosed)
	}
	if err := p.reg.del(fd); err != nil {
		return fmt.Errorf("poller: del fd %d: %w", fd, err)
	}
	var del [2]unix.Kevent_t
	unix.SetKevent(&del[0], fd, unix.EVFILT_READ, unix.EV_DELETE)
	unix.SetKevent(&del[1], fd, unix.EVFILT_WRITE, unix.EV_DELETE)
	_, err := unix.Kevent(p.kq, del[:], nil, nil)
	if err != nil && !errors.Is(err, unix.EBADF) && !errors.Is(err, unix.ENOENT) {
		// EBADF: fd was closed first, and the kernel has dropped its
		// filters. ENOENT: a failed Add left the write filter out.
		return fmt.Errorf("poller: del fd %d: %w", fd, err)
	}
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
		var errs []error
		if p.waitErr != nil {
			errs = append(errs, fmt.Errorf("poller: wait: %w", p.waitErr))
		}
		for _, fd := range [...]int{p.kq, p.wakeR, p.wakeW} {
			if err := unix.Close(fd); err != nil {
				errs = append(errs, fmt.Errorf("poller: close: %w", err))
			}
		}
		p.closeErr = errors.Join(errs...)
	})
	return p.closeErr
}

// kevents returns the changes that arm registration id of fd for ev: each
// filter added (which, for one already there, makes the kernel look at the
// fd's readiness again), with EV_DISPATCH, enabled if wanted and disabled
// if not. Adding both at every Arm keeps them to one kevent call that
// cannot fail with ENOENT.
func kevents(fd int, ev Event, id uint32) [2]unix.Kevent_t {
	var k [2]unix.Kevent_t
	for i, f := range [...]struct {
		ev     Event
		filter int
	}{{Readable, unix.EVFILT_READ}, {Writable, unix.EVFILT_WRITE}} {
		flags := unix.EV_ADD | evDispatch | unix.EV_DISABLE
		if ev&f.ev != 0 {
			flags = unix.EV_ADD | evDispatch | unix.EV_ENABLE
		}
		unix.SetKevent(&k[i], fd, f.filter, flags)
		setUdata(&k[i], id)
	}
	return k
}
