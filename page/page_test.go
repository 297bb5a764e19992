package page_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/page"
)

type summary struct {
	IntervalMillis int64                    `json:"interval_ms"`
	Auth           bool                     `json:"auth"`
	Now            page.Sample              `json:"now"`
	Samples        []page.Sample            `json:"samples"`
	Topics         int                      `json:"topics"`
	Top            []broadcast.TopicSummary `json:"top"`
}

func get(t *testing.T, url string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, b
}

// TestSummaryRing: the summary holds the last Keep samples, oldest first,
// once the ring has wrapped.
func TestSummaryRing(t *testing.T) {
	var reads atomic.Uint64
	p := page.New(page.Config{
		Read:   func() page.Sample { return page.Sample{Deliveries: reads.Add(1), Connections: 7} },
		Topics: func(int) ([]broadcast.TopicSummary, int) { return nil, 0 },
		Every:  5 * time.Millisecond,
		Keep:   3,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	require.Eventually(t, func() bool { return reads.Load() >= 8 }, 10*time.Second, time.Millisecond)
	cancel()
	<-done

	srv := httptest.NewServer(p)
	defer srv.Close()
	resp, b := get(t, srv.URL+"/page/summary")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "no-store", resp.Header.Get("Cache-Control"))
	var s summary
	require.NoError(t, json.Unmarshal(b, &s), "%s", b)
	require.Len(t, s.Samples, 3)
	sampled := reads.Load() - 1 // the summary's own read is the last
	for i, smp := range s.Samples {
		assert.Equal(t, sampled-2+uint64(i), smp.Deliveries, "sample %d of %v", i, s.Samples)
		if i > 0 {
			assert.GreaterOrEqual(t, smp.At, s.Samples[i-1].At)
		}
	}
	assert.Equal(t, sampled+1, s.Now.Deliveries)
	assert.Equal(t, int64(7), s.Now.Connections)
	assert.Equal(t, int64(5), s.IntervalMillis)
	assert.NotNil(t, s.Top)
}

// TestSummaryShared: viewers within a second share one summary, so that
// its cost does not grow with them; the topics asked for are TopN.
func TestSummaryShared(t *testing.T) {
	var reads, lists atomic.Int32
	var asked atomic.Int32
	p := page.New(page.Config{
		Read: func() page.Sample { reads.Add(1); return page.Sample{} },
		Topics: func(n int) ([]broadcast.TopicSummary, int) {
			lists.Add(1)
			asked.Store(int32(n))
			return []broadcast.TopicSummary{{Name: "a", Subscribers: 2, Seq: 9, Epoch: "e"}}, 40
		},
		TopN: 5,
		Auth: true,
	})
	srv := httptest.NewServer(p)
	defer srv.Close()
	var first []byte
	for i := range 20 {
		_, b := get(t, srv.URL+"/page/summary")
		if i == 0 {
			first = b
		}
		assert.Equal(t, string(first), string(b))
	}
	// Twenty polls well within a second: one build (or two, if the second
	// turned over in between).
	assert.LessOrEqual(t, reads.Load(), int32(2))
	assert.LessOrEqual(t, lists.Load(), int32(2))
	assert.Equal(t, int32(5), asked.Load())
	var s summary
	require.NoError(t, json.Unmarshal(first, &s))
	assert.True(t, s.Auth)
	assert.Equal(t, 40, s.Topics)
	assert.Equal(t, []broadcast.TopicSummary{{Name: "a", Subscribers: 2, Seq: 9, Epoch: "e"}}, s.Top)
}

// TestFiles: the page and its files are served from the binary, with a
// content security policy that keeps the page to its own server.
func TestFiles(t *testing.T) {
	p := page.New(page.Config{
		Read:   func() page.Sample { return page.Sample{} },
		Topics: func(int) ([]broadcast.TopicSummary, int) { return nil, 0 },
	})
	srv := httptest.NewServer(p)
	defer srv.Close()
	for path, typ := range map[string]string{
		"/":              "text/html",
		"/page/page.js":  "javascript",
		"/page/page.css": "text/css",
	} {
		resp, b := get(t, srv.URL+path)
		require.Equal(t, http.StatusOK, resp.StatusCode, path)
		assert.Contains(t, resp.Header.Get("Content-Type"), typ, path)
		assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "connect-src 'self'", path)
		assert.Equal(t, "nosniff", resp.Header.Get("X-Content-Type-Options"), path)
		assert.NotEmpty(t, b, path)
	}
	_, html := get(t, srv.URL+"/")
	assert.True(t, strings.Contains(string(html), `src="/page/page.js"`))
	resp, _ := get(t, srv.URL+"/page/missing.js")
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// TestSummaryBounded: with its ring full and its topics at their longest,
// the summary stays a few tens of KB whatever the server holds.
func TestSummaryBounded(t *testing.T) {
	long := strings.Repeat("t", 128)
	top := make([]broadcast.TopicSummary, 20)
	for i := range top {
		top[i] = broadcast.TopicSummary{Name: long, Subscribers: 1 << 30, Seq: 1 << 62, Epoch: "dne80ay4n3br"}
	}
	p := page.New(page.Config{
		Read: func() page.Sample {
			return page.Sample{Connections: 1 << 30, Deliveries: 1 << 62, QueuedBytes: 1 << 40}
		},
		Topics: func(n int) ([]broadcast.TopicSummary, int) { return top[:n], 100_000 },
		Every:  time.Millisecond,
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); p.Run(ctx) }()
	srv := httptest.NewServer(p)
	defer srv.Close()
	var body []byte
	require.Eventually(t, func() bool {
		var s summary
		_, body = get(t, srv.URL+"/page/summary")
		return json.Unmarshal(body, &s) == nil && len(s.Samples) == 300
	}, 10*time.Second, 50*time.Millisecond)
	cancel()
	<-done
	t.Logf("a full summary: %d bytes", len(body))
	assert.Less(t, len(body), 40<<10)
}
