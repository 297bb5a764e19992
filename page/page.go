// Package page serves fanout's live page: files embedded in the binary
// that draw the server's connections, deliveries and queued bytes over the
// last minutes, list its busiest topics, and offer a console that
// subscribes and publishes over the page's own WebSocket.
//
// The page polls one bounded JSON summary. Its cost does not grow with the
// connections or the viewers: the gauges are sampled on a timer into a
// fixed ring, and the summary is built at most once a second, whoever asks.
package page

import (
	"context"
	"embed"
	"encoding/json"
	"io/fs"
	"net/http"
	"path"
	"sync"
	"time"

	"github.com/fanout/fanout/broadcast"
)

//go:embed static
var static embed.FS

// Sample is one reading of the server's gauges and counters.
type Sample struct {
	At          int64  `json:"t"`            // unix milliseconds
	Connections int64  `json:"connections"`  // WebSocket connections held
	Deliveries  uint64 `json:"deliveries"`   // messages queued to subscribers, since start
	QueuedBytes int64  `json:"queued_bytes"` // queued to clients and not yet written
}

// Config configures a Page. Read and Topics are required.
type Config struct {
	// Read reads the gauges, At excepted. Run calls it every Every, and the
	// summary once when it is built.
	Read func() Sample
	// Topics returns at most n topics, busiest first, and the number held
	// (broadcast.Hub.TopTopics).
	Topics func(n int) ([]broadcast.TopicSummary, int)
	// Every is the time between samples. Default: 2 s.
	Every time.Duration
	// Keep is the samples kept, the chart's span. Default: 300 (ten minutes
	// at the default Every).
	Keep int
	// TopN is the topics the summary lists. Default: 20.
	TopN int
	// Auth says that WebSocket connections need a token: the console asks
	// for one.
	Auth bool
}

// Page is the live page's HTTP handler and its sampler. It is safe for
// concurrent use.
type Page struct {
	cfg   Config
	files http.Handler

	mu      sync.Mutex // guards the fields below
	ring    []Sample   // the last Keep samples, oldest at start
	start   int
	built   time.Time // when summary was built
	summary []byte    // the JSON of the last summary
}

// summaryTTL is how long a built summary serves every viewer.
const summaryTTL = time.Second

// New returns a page with cfg; Run samples for it.
func New(cfg Config) *Page {
	if cfg.Every <= 0 {
		cfg.Every = 2 * time.Second
	}
	if cfg.Keep <= 0 {
		cfg.Keep = 300
	}
	if cfg.TopN <= 0 {
		cfg.TopN = 20
	}
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return &Page{cfg: cfg, files: http.StripPrefix("/page/", http.FileServerFS(sub)), ring: make([]Sample, 0, cfg.Keep)}
}

// Run samples the gauges every Config.Every until ctx is done.
func (p *Page) Run(ctx context.Context) {
	tick := time.NewTicker(p.cfg.Every)
	defer tick.Stop()
	p.sample(time.Now())
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			p.sample(now)
		}
	}
}

func (p *Page) sample(now time.Time) {
	s := p.cfg.Read()
	s.At = now.UnixMilli()
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.ring) < cap(p.ring) {
		p.ring = append(p.ring, s)
		return
	}
	p.ring[p.start] = s
	p.start = (p.start + 1) % len(p.ring)
}

// summary is the JSON the page polls at /page/summary.
type summary struct {
	IntervalMillis int64                    `json:"interval_ms"` // between samples, and polls
	Auth           bool                     `json:"auth"`
	Now            Sample                   `json:"now"`
	Samples        []Sample                 `json:"samples"` // oldest first
	Topics         int                      `json:"topics"`  // held, of which top lists the busiest
	Top            []broadcast.TopicSummary `json:"top"`
}

// build returns the summary's JSON, built anew if the last one is older
// than summaryTTL. Viewers wait for one build rather than each doing one.
func (p *Page) build(now time.Time) []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.summary != nil && now.Sub(p.built) < summaryTTL {
		return p.summary
	}
	s := summary{IntervalMillis: p.cfg.Every.Milliseconds(), Auth: p.cfg.Auth, Now: p.cfg.Read()}
	s.Now.At = now.UnixMilli()
	s.Samples = make([]Sample, 0, len(p.ring))
	s.Samples = append(s.Samples, p.ring[p.start:]...)
	s.Samples = append(s.Samples, p.ring[:p.start]...)
	s.Top, s.Topics = p.cfg.Topics(p.cfg.TopN)
	if s.Top == nil {
		s.Top = []broadcast.TopicSummary{}
	}
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // plain numbers and strings: cannot fail
	}
	p.summary, p.built = b, now
	return b
}

// csp keeps the page to its own files and its own server's WebSocket.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// ServeHTTP serves the page at /, its files under /page/ and its summary
// at /page/summary. Only GET and HEAD are served.
func (p *Page) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", csp)
	h.Set("Referrer-Policy", "no-referrer")
	switch r.URL.Path {
	case "/":
		b, _ := static.ReadFile("static/index.html")
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		_, _ = w.Write(b)
	case "/page/summary":
		h.Set("Content-Type", "application/json")
		h.Set("Cache-Control", "no-store")
		_, _ = w.Write(p.build(time.Now()))
	default:
		// The types are set here, not by the host's MIME table: with
		// nosniff, a script served as text/plain would not run.
		switch path.Ext(r.URL.Path) {
		case ".js":
			h.Set("Content-Type", "text/javascript; charset=utf-8")
		case ".css":
			h.Set("Content-Type", "text/css; charset=utf-8")
		}
		p.files.ServeHTTP(w, r)
	}
}
