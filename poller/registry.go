package poller

import (
	"sync"
	"sync/atomic"
)

// registry holds, per fd number, the registration of the fd with a poller
// that reports events through the kernel by fd number and a tag of its own
// (kqueue's udata): the callback, the registration's id, and whether it is
// armed.
//
// The id tells two registrations of one fd number apart. An event the
// kernel collected for an fd that was then deleted, closed, reopened and
// added again (all while the poller ran the callbacks of the same batch)
// carries the old id, and take drops it: it is neither delivered to the new
// callback nor allowed to disarm the new registration, which would swallow
// the new registration's first event.
//
// armed gives one-shot semantics across the filters of one registration:
// take lets one event through per arm, however many filters fire.
//
// A registry is safe for concurrent use. mu is held shared by take and arm,
// and exclusively by add and del, which write slots or may grow them. The
// callbacks are never called with mu held.
type registry struct {
	mu     sync.RWMutex
	slots  []regSlot
	lastID uint32 // the id given by the latest add
}

// regSlot is the registration of one fd number (16 bytes); id 0 means none.
type regSlot struct {
	cb func(Event)
	id uint32
	// armed holds the events the registration is armed for, 0 once
	// disarmed.
	armed atomic.Uint32
}

// add registers fd, armed for ev, with cb and returns the registration's
// id, never 0. It fails with ErrRegistered if fd is registered.
func (r *registry) add(fd int, ev Event, cb func(Event)) (uint32, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fd >= len(r.slots) {
		grown := make([]regSlot, max(fd+1, 2*len(r.slots), 64))
		for i := range r.slots {
			s := &r.slots[i]
			grown[i].cb, grown[i].id = s.cb, s.id
			grown[i].armed.Store(s.armed.Load())
		}
		r.slots = grown
	}
	s := &r.slots[fd]
	if s.id != 0 {
		return 0, ErrRegistered
	}
	r.lastID++
	if r.lastID == 0 { // wrapped: 0 means no registration
		r.lastID++
	}
	s.cb, s.id = cb, r.lastID
	s.armed.Store(uint32(ev))
	return s.id, nil
}

// take reports whether ev, collected by the kernel for registration id of
// fd, is to be delivered, and to which callback. It is if id is fd's
// current registration and that is armed for ev (Hangup alone counts for
// nothing: the kernel reports it through a filter); take then disarms it.
// An event of a filter the registration is no longer armed for (collected
// in the batch that had its other filter's event, before the turn that
// followed armed it anew) is dropped too.
func (r *registry) take(fd int, id uint32, ev Event) (func(Event), bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if id == 0 || fd < 0 || fd >= len(r.slots) {
		return nil, false
	}
	s := &r.slots[fd]
	if s.id != id {
		return nil, false
	}
	armed := s.armed.Load()
	if Event(armed)&ev&(Readable|Writable) == 0 || !s.armed.CompareAndSwap(armed, 0) {
		return nil, false
	}
	return s.cb, true
}

// arm arms fd's registration for one event of ev and returns its id. It is
// called before the kernel is asked to report again, so that no event is
// collected while the registration is still disarmed, and dropped.
func (r *registry) arm(fd int, ev Event) (uint32, error) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if fd < 0 || fd >= len(r.slots) || r.slots[fd].id == 0 {
		return 0, ErrNotRegistered
	}
	r.slots[fd].armed.Store(uint32(ev))
	return r.slots[fd].id, nil
}

// del forgets fd's registration. An event collected for it before del and
// taken after is dropped.
func (r *registry) del(fd int) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if fd < 0 || fd >= len(r.slots) || r.slots[fd].id == 0 {
		return ErrNotRegistered
	}
	s := &r.slots[fd]
	s.cb, s.id = nil, 0
	s.armed.Store(0)
	return nil
}
