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
	target   netip.AddrPort
	sources  []netip.Addr // none: let the kernel choose
	request  []byte       // the upgrade request of every connection; nil: minted
	host     string       // of the request, to build a minted one
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
	next     atomic.Int64 // index of the next connection, for the source
	doneOnce sync.Once
	done     chan struct{}
}

// addrs returns fresh socket addresses for the next connection: a
// unix.Sockaddr is scratch space for the syscall that takes it, so
// connections being started concurrently cannot share one.
func (p *dialPlan) addrs() (target, source unix.Sockaddr) {
	target = sockaddr(p.target.Addr(), int(p.target.Port()))
	if len(p.sources) > 0 {
		i := p.next.Add(1) - 1
		source = sockaddr(p.sources[int(i%int64(len(p.sources)))], 0)
	}
	return target, source
}

// upgrade returns the upgrade request of the plan's next connection: the
// same for all, or one with a token minted for it.
func (p *dialPlan) upgrade() ([]byte, error) {
	if p.request != nil {
		return p.request, nil
	}
	sub := fmt.Sprintf("bench-%d-%d", os.Getpid(), p.minted.Add(1))
	token, err := p.auth.token(sub, time.Now())
	if err != nil {
		return nil, err
	}
	return upgradeRequest(p.host, p.path, p.key, token, p.offer), nil
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
