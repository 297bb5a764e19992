// Package poller is the reactor of fanout: it reports readiness of raw file
// descriptors to callbacks, runs the work those callbacks hand off on a
// bounded pool of worker goroutines, and accepts connections as raw fds.
//
// A connection costs one fd and one small callback, never a goroutine: a
// [Poller] watches many fds from a single goroutine, and a callback that
// fires hands the fd to a [Pool], whose worker reads or writes without
// blocking and then calls [Poller.Arm] to ask for the next event.
//
// Readiness is level-triggered and one-shot. After a callback has run for an
// fd, that fd is disarmed until Arm is called for it again, so an fd is served
// by at most one worker at a time, and nothing is lost by not reading all
// that is there: if data is still pending when the fd is re-armed, the
// callback fires again.
//
// The package runs on Linux (epoll, on github.com/mailru/easygo/netpoll's
// raw-fd API) and on darwin, FreeBSD, NetBSD and OpenBSD (kqueue, on
// golang.org/x/sys/unix: easygo's kqueue builds on neither NetBSD nor
// OpenBSD, and cannot tell two registrations of one fd number apart). It
// never duplicates an fd nor changes its blocking mode.
package poller

// Event is a readiness bit set.
type Event uint8

const (
	Readable Event = 1 << iota // data (or EOF) to read, or a connection to accept
	Writable                   // room in the send buffer
	Hangup                     // peer hung up (EPOLLHUP/EPOLLRDHUP, EV_EOF) or error (EPOLLERR, EV_ERROR)
)

// Handler is what a registered fd's events are reported to (see
// Poller.AddHandler). OnEvent runs on the poller's own goroutine: it must
// not block (hand work to a Pool), and it must not call Poller.Close.
type Handler interface {
	OnEvent(Event)
}

// HandlerFunc is a function as a Handler.
type HandlerFunc func(Event)

// OnEvent calls f(ev).
func (f HandlerFunc) OnEvent(ev Event) { f(ev) }
