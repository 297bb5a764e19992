package broadcast_test

import (
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

// TestNoWaitCycle drives the load that froze the whole server for good: a
// topic with a few hundred subscribers that are reset (RST) and replaced
// all the time, pings from the sweep, and WebSocket publishers with many
// publishes in flight, on two workers with a tiny turn queue and tiny shard
// inboxes. Writes to the reset sockets fail in shards and in the sweep
// while workers post publishes to the shards. Every round of publishes must
// be answered within its deadline, and /healthz must answer afterwards.
func TestNoWaitCycle(t *testing.T) {
	const (
		subscribers = 200
		publishers  = 4
		inFlight    = 16
	)
	run := 3 * time.Second
	if testing.Short() {
		run = time.Second
	}
	var abandon atomic.Bool
	ts := startHubUnless(t, broadcast.Config{Shards: 2, InboxLen: 2}, wsconn.Config{
		Workers:      2,
		TurnQueue:    1,
		PingInterval: 20 * time.Millisecond,
		CloseTimeout: 200 * time.Millisecond,
	}, &abandon)

	// The subscribers never read: the reset ones fail the server's writes.
	var mu sync.Mutex
	subs := make([]net.Conn, 0, subscribers)
	dialSub := func() error {
		c, _, err := dial("gorilla", ts.addr, "topics=t")
		if err != nil {
			return err
		}
		mu.Lock()
		subs = append(subs, c.(*gorillaClient).c.NetConn())
		mu.Unlock()
		return nil
	}
	for range subscribers {
		require.NoError(t, dialSub())
	}
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, c := range subs {
			_ = c.Close()
		}
	})

	stop := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, publishers+1)
	wg.Add(1)
	go func() { // resets ten subscribers every 10 ms and replaces them
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			case <-time.After(10 * time.Millisecond):
			}
			for range 10 {
				mu.Lock()
				i := rand.IntN(len(subs))
				c := subs[i]
				subs[i] = subs[len(subs)-1]
				subs = subs[:len(subs)-1]
				mu.Unlock()
				_ = c.(*net.TCPConn).SetLinger(0)
				_ = c.Close()
				if err := dialSub(); err != nil {
					errs <- fmt.Errorf("replacing a subscriber: %w", err)
					return
				}
			}
		}
	}()
	rounds := make([]int, publishers)
	for p := range publishers {
		pub := mustDial(t, "gorilla", ts.addr, "")
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				for range inFlight {
					if err := pub.WriteText([]byte(publishMsg("t", `{"p":1}`))); err != nil {
						errs <- fmt.Errorf("publisher %d: %w", p, err)
						return
					}
				}
				for i := range inFlight {
					b, err := pub.ReadText(3 * time.Second)
					if err != nil {
						errs <- fmt.Errorf("publisher %d, round %d: reply %d of %d not within 3 s: %w", p, rounds[p], i+1, inFlight, err)
						return
					}
					var m struct{ Type string }
					if json.Unmarshal(b, &m) != nil || m.Type != "published" {
						errs <- fmt.Errorf("publisher %d: reply %s", p, b)
						return
					}
				}
				rounds[p]++
			}
		}()
	}

	var frozen error
	select {
	case frozen = <-errs:
	case <-time.After(run):
	}
	close(stop)
	stopped := make(chan struct{})
	go func() {
		wg.Wait()
		close(stopped)
	}()
	select {
	case <-stopped:
		select {
		case err := <-errs:
			frozen = cmp.Or(frozen, err)
		default:
		}
	case <-time.After(5 * time.Second):
		frozen = cmp.Or(frozen, errors.New("the clients did not stop within 5 s"))
	}
	if frozen == nil {
		c := &http.Client{Timeout: 3 * time.Second}
		resp, err := c.Get("http://" + ts.addr + "/healthz")
		if err == nil {
			_ = resp.Body.Close()
		}
		frozen = err
	}
	if frozen != nil {
		// A frozen server cannot be shut down: the cleanup leaves it.
		abandon.Store(true)
		buf := make([]byte, 1<<20)
		t.Fatalf("server frozen: %v\n%s", frozen, buf[:runtime.Stack(buf, true)])
	}
	t.Logf("publish rounds of %d: %v; hub %+v", inFlight, rounds, ts.hub.Stats())
}
