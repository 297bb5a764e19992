package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowPeer is a broadcast server of the bench's minimal protocol that
// delivers one message per interval, however many are published: a server
// far behind the offered rate, which still makes progress.
type slowPeer struct {
	interval time.Duration
	mu       sync.Mutex
	subs     []*gorilla.Conn
	seq      int
	queue    chan []byte
}

func startSlowPeer(t *testing.T, interval time.Duration) string {
	p := &slowPeer{interval: interval, queue: make(chan []byte, 10_000)}
	up := gorilla.Upgrader{}
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		p.mu.Lock()
		p.subs = append(p.subs, c)
		p.mu.Unlock()
		for {
			if _, _, err := c.ReadMessage(); err != nil {
				break
			}
		}
		p.mu.Lock()
		p.subs = slices.DeleteFunc(p.subs, func(s *gorilla.Conn) bool { return s == c })
		p.mu.Unlock()
		_ = c.Close()
	})
	mux.HandleFunc("/publish", func(w http.ResponseWriter, r *http.Request) {
		data, _ := io.ReadAll(r.Body)
		p.mu.Lock()
		p.seq++
		seq := p.seq
		p.mu.Unlock()
		p.queue <- fmt.Appendf(nil, `{"topic":%q,"seq":%d,"data":%s}`, r.URL.Query().Get("topic"), seq, data)
		w.WriteHeader(http.StatusAccepted)
		_, _ = fmt.Fprintf(w, `{"seq":%d}`, seq)
	})
	mux.HandleFunc("/stats", func(w http.ResponseWriter, _ *http.Request) {
		p.mu.Lock()
		n := len(p.subs)
		p.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{"connections": n, "rss_bytes": 0, "go_heap_bytes": 0, "goroutines": 0, "open_fds": 0})
	})
	srv := httptest.NewServer(mux)
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case m := <-p.queue:
				select {
				case <-stop:
					return
				case <-time.After(p.interval):
				}
				p.mu.Lock()
				for _, c := range p.subs {
					_ = c.WriteMessage(gorilla.TextMessage, m)
				}
				p.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() {
		close(stop)
		<-done
		srv.CloseClientConnections()
		srv.Close()
	})
	return "ws://" + strings.TrimPrefix(srv.URL, "http://")
}

// TestThroughputCatchUp: once publishing has ended, a throughput run waits
// at most --catch-up for a server that is behind, even while its receipts
// still come, and counts what did not come as not delivered. It waited
// for as long as receipts came (the gorilla hub at 400 msg/s took 13
// minutes of one compare); here the peer needs 4 s to deliver what it was
// offered in 1 s.
func TestThroughputCatchUp(t *testing.T) {
	u := startSlowPeer(t, 100*time.Millisecond)
	o := testOptions(t, u)
	o.Conns = 10
	o.Rates = rateList{40}
	o.Duration = time.Second
	o.CatchUp = 500 * time.Millisecond
	o.ServerPID = -1
	start := time.Now()
	rep, err := Run(context.Background(), "throughput", o, os.Stderr, testLogger())
	require.NoError(t, err)
	took := time.Since(start)
	require.Len(t, rep.Rates, 1)
	x := rep.Rates[0]
	assert.EqualValues(t, 40, x.Messages)
	assert.True(t, x.Balanced(), "%+v", x.Accounting)
	assert.Positive(t, x.Drops, "what had not come counts as not delivered: %+v", x.Accounting)
	assert.Positive(t, x.Receipts)
	assert.Less(t, took, 4*time.Second, "the run waited for every receipt")
	require.NotNil(t, rep.Dial)
	assert.EqualValues(t, -1, rep.Dial.ServerCPUSeconds, "no server pid: its CPU is unknown, not zero")
	assert.EqualValues(t, -1, rep.Dial.ServerMicrosPerConn())
	var out strings.Builder
	rep.WriteSummary(&out)
	assert.Contains(t, out.String(), "ramp-up cost   server CPU unknown; clients ")
}
