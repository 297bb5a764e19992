package bench

import (
	"fmt"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// dialPlan is a group of connections to open: where to, from where, how
// many at once, and what they do once open.
type dialPlan struct {
	kind     connKind
	targets  []planTarget // taken in turn
	sources  []netip.Addr // none: let the kernel choose
	path     string
	key      string
	auth     *credentials
	offer    string       // Sec-WebSocket-Extensions; "": none
	minted   atomic.Int64 // tokens minted, for each a distinct sub
	timeout  time.Duration
	sem      chan struct{} // dial concurrency; nil for churn
	n        int64         // 0: unbounded (churn)
	ok       atomic.Int64
	failed   atomic.Int64
	next     atomic.Int64 // index of the next connection, for the source and the target
	doneOnce sync.Once
	done     chan struct{}
}

// planTarget is a server of a plan.
type planTarget struct {
	addr    netip.AddrPort
	host    string // of the request, to build a minted one
	request []byte // the upgrade request of every connection to it; nil: minted
}

// addrs returns the next connection's target (its index in p.targets, for
// upgrade) and fresh socket addresses for it: a unix.Sockaddr is scratch
// space for the syscall that takes it, so connections being started
// concurrently cannot share one.
func (p *dialPlan) addrs() (tgt int, target, source unix.Sockaddr) {
	i := p.next.Add(1) - 1
	tgt = int(i % int64(len(p.targets)))
	t := p.targets[tgt].addr
	target = sockaddr(t.Addr(), int(t.Port()))
	if len(p.sources) > 0 {
		source = sockaddr(p.sources[int(i%int64(len(p.sources)))], 0)
	}
	return tgt, target, source
}

// upgrade returns the upgrade request of a connection to target tgt: the
// same for all, or one with a token minted for it.
func (p *dialPlan) upgrade(tgt int) ([]byte, error) {
	t := &p.targets[tgt]
	if t.request != nil {
		return t.request, nil
	}
	sub := fmt.Sprintf("bench-%d-%d", os.Getpid(), p.minted.Add(1))
	token, err := p.auth.token(sub, time.Now())
	if err != nil {
		return nil, err
	}
	return upgradeRequest(t.host, p.path, p.key, token, p.offer), nil
}

// settle counts a connection of the plan as open or failed and gives back
// its dial slot.
func (p *dialPlan) settle(ok bool) {
	if p.sem != nil {
		<-p.sem
	}
	if ok {
		p.ok.Add(1)
	} else {
		p.failed.Add(1)
	}
	if p.n > 0 && p.ok.Load()+p.failed.Load() >= p.n {
		p.doneOnce.Do(func() { close(p.done) })
	}
}
