//go:build linux

package poller

import (
	"errors"
	"fmt"
	"sync"

	"github.com/mailru/easygo/netpoll"
)

// epollClosed is the event value easygo's Epoll passes to every registered
// callback from Epoll.Close (netpoll._EPOLLCLOSED, unexported there). epoll
// itself never reports this bit.
const epollClosed netpoll.EpollEvent = 0x20

// Poller is a reactor over raw file descriptors: level-triggered, one-shot.
// After a callback runs for fd, fd is disarmed until Arm is called again, so
// one fd is served by one worker at a time.
//
// Callbacks run one at a time on the poller's own goroutine. Add, Arm and Del
// are safe for concurrent use, including from callbacks and from workers.
// Once the poller is closed they return an error that wraps ErrClosed.
//
// The poller keeps, per fd, only the handler (in easygo's fd-to-callback
// map) and a 24-byte adapter around it; the fd itself is used as is, never
// duplicated and never switched to blocking mode.
type Poller struct {
	ep *netpoll.Epoll

	// waitErr is written by the wait goroutine before it exits and read by
	// Close after Epoll.Close has waited for that exit.
	waitErr error

	closeOnce sync.Once
	closeErr  error
}

// New creates a poller and starts its goroutine. Call Close to stop it.
func New() (*Poller, error) {
	p := new(Poller)
	ep, err := netpoll.EpollCreate(&netpoll.EpollConfig{OnWaitError: p.onWaitError})
	if err != nil {
		return nil, fmt.Errorf("poller: epoll create: %w", err)
	}
	p.ep = ep
	return p, nil
}

// onWaitError runs on the wait goroutine when epoll_wait fails for good (the
// goroutine then exits) or when closing the epoll fd fails.
func (p *Poller) onWaitError(err error) {
	p.waitErr = errors.Join(p.waitErr, err)
}

// Add registers fd and arms it for ev (Readable and/or Writable; Hangup is
// always reported), with cb as its Handler (see AddHandler).
func (p *Poller) Add(fd int, ev Event, cb func(Event)) error {
	if cb == nil {
		return fmt.Errorf("poller: add fd %d: nil callback", fd)
	}
	return p.AddHandler(fd, ev, HandlerFunc(cb))
}

// AddHandler registers fd and arms it for ev (Readable and/or Writable;
// Hangup is always reported).
//
// h.OnEvent runs on the poller's own goroutine: it must not block (hand
// work to a Pool), and it must not call Close. It may still be called once
// after Del returns (a late event); callers guard with their own closed
// flag.
//
// Per fd, the poller allocates one 24-byte adapter around h, which easygo's
// map holds; a caller that passes a pointer as h (a connection) allocates
// nothing more, where a method value as a callback would cost 16 bytes.
func (p *Poller) AddHandler(fd int, ev Event, h Handler) error {
	if h == nil {
		return fmt.Errorf("poller: add fd %d: nil handler", fd)
	}
	err := p.ep.Add(fd, epollEvents(ev), func(e netpoll.EpollEvent) {
		if e&epollClosed != 0 {
			// Epoll.Close is telling every callback it is done: that is
			// not readiness, and Close promises no callback after it.
			return
		}
		h.OnEvent(fromEpoll(e))
	})
	if err != nil {
		if err != netpoll.ErrRegistered && err != netpoll.ErrClosed {
			// easygo keeps the callback when epoll_ctl fails; drop it,
			// or fd could never be added again.
			_ = p.ep.Del(fd)
		}
		return fmt.Errorf("poller: add fd %d: %w", fd, ownErr(err))
	}
	return nil
}

// Arm re-arms fd (one-shot) for ev. It is called by whoever serves fd, once
// it is done with its turn; if fd is still ready for ev, the callback fires
// again at once.
func (p *Poller) Arm(fd int, ev Event) error {
	if err := p.ep.Mod(fd, epollEvents(ev)); err != nil {
		return fmt.Errorf("poller: arm fd %d: %w", fd, ownErr(err))
	}
	return nil
}

// Del unregisters fd. Call it before closing fd: the kernel forgets a closed
// fd on its own, but the poller would keep its callback.
func (p *Poller) Del(fd int) error {
	if err := p.ep.Del(fd); err != nil {
		return fmt.Errorf("poller: del fd %d: %w", fd, ownErr(err))
	}
	return nil
}

// Close stops the poller; no callback runs after Close returns. It waits for
// a callback that is running, so it must not be called from a callback.
// Registered fds are not closed. Close is idempotent: later calls return nil.
func (p *Poller) Close() error {
	p.closeOnce.Do(func() {
		if err := p.ep.Close(); err != nil {
			p.closeErr = fmt.Errorf("poller: close: %w", err)
			return
		}
		if p.waitErr != nil {
			p.closeErr = fmt.Errorf("poller: wait: %w", p.waitErr)
		}
	})
	return p.closeErr
}

// ownErr translates easygo's errors to the package's own, which every
// platform returns.
func ownErr(err error) error {
	switch err {
	case netpoll.ErrClosed:
		return ErrClosed
	case netpoll.ErrRegistered:
		return ErrRegistered
	case netpoll.ErrNotRegistered:
		return ErrNotRegistered
	}
	return err
}

// epollEvents translates ev to an epoll interest set: level-triggered (no
// EPOLLET) and one-shot. EPOLLHUP and EPOLLERR need not be asked for. The
// peer's half-close (EPOLLRDHUP) is asked for only with Readable: it is
// input, and it stays set, so an fd armed for writing alone would otherwise
// fire at every Arm.
func epollEvents(ev Event) netpoll.EpollEvent {
	e := netpoll.EpollEvent(netpoll.EPOLLONESHOT)
	if ev&Readable != 0 {
		e |= netpoll.EPOLLIN | netpoll.EPOLLRDHUP
	}
	if ev&Writable != 0 {
		e |= netpoll.EPOLLOUT
	}
	return e
}

// fromEpoll translates what epoll reported.
func fromEpoll(e netpoll.EpollEvent) Event {
	var ev Event
	if e&netpoll.EPOLLIN != 0 {
		ev |= Readable
	}
	if e&netpoll.EPOLLOUT != 0 {
		ev |= Writable
	}
	if e&(netpoll.EPOLLHUP|netpoll.EPOLLRDHUP|netpoll.EPOLLERR) != 0 {
		ev |= Hangup
	}
	return ev
}
