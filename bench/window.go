package bench

import (
	"fmt"
	"sort"

	"github.com/HdrHistogram/hdrhistogram-go"
)

// resetWindow starts a measurement window: receipts, closes and the
// histograms start from zero. track keeps each seq's latest latency.
func (e *engine) resetWindow(track bool) {
	e.mu.Lock()
	e.win.Add(1)
	e.winClosed, e.winRecv = 0, 0
	clear(e.closeCodes)
	e.mu.Unlock()
	e.trackLast.Store(track)
	e.receipts.Store(0)
	e.controls.Store(0)
	e.duplicates.Store(0)
	e.echoes.Store(0)
	e.echoErrors.Store(0)
	e.cycles.Store(0)
	e.churnFailed.Store(0)
	for _, s := range e.slots {
		s.mu.Lock()
		s.hist.Reset()
		s.lastLat = nil
		if track {
			s.lastLat = make(map[uint64]int64)
		}
		s.mu.Unlock()
	}
}

// windowCounts is what collect reports of a window.
type windowCounts struct {
	Live         int64            `json:"live"`          // subscribers open now
	LiveRecv     int64            `json:"live_recv"`     // their receipts in the window
	LiveShort    int64            `json:"live_short"`    // their missing receipts (drops)
	Closed       int64            `json:"closed"`        // subscribers released during the window
	ClosedRecv   int64            `json:"closed_recv"`   // their receipts
	Receipts     int64            `json:"receipts"`      // all receipts in the window
	Controls     int64            `json:"controls"`      // text messages without a seq
	Duplicates   int64            `json:"duplicates"`    // seq not above the last one seen
	CloseCodes   map[string]int64 `json:"close_codes"`   // server-initiated closes, by code
	Errors       map[string]int64 `json:"errors"`        // dial failures, by message
	Histogram    []byte           `json:"histogram"`     // HdrHistogram V2, microseconds
	LastLatency  map[string]int64 `json:"last_latency"`  // seq -> latest receipt's latency, ns
	Echoes       int64            `json:"echoes"`        // echo round trips
	EchoErrors   int64            `json:"echo_errors"`   // echoes of the wrong length
	Cycles       int64            `json:"cycles"`        // completed churn cycles
	ChurnFailed  int64            `json:"churn_failed"`  // churn connections that failed
	OpenNow      int64            `json:"open_now"`      // connections open now, any kind
	WorkerCPUSec float64          `json:"worker_cpu_s"`  // this process's CPU time so far
	MaxRSSBytes  int64            `json:"max_rss_bytes"` // this process's peak RSS
}

// collect reports the window: expected is the number of messages every
// subscriber open at its start should have received.
func (e *engine) collect(expected int64) (windowCounts, error) {
	w := windowCounts{CloseCodes: map[string]int64{}, Errors: map[string]int64{}}
	win := e.win.Load()
	e.mu.Lock()
	for _, c := range e.conns {
		if c.plan.kind != kindSubscriber {
			continue
		}
		// Connections not yet open are no subscribers yet.
		if c.isOpen.Load() {
			var r int64
			if c.win.Load() == win {
				r = int64(c.recv.Load())
			}
			w.Live++
			w.LiveRecv += r
			if expected > r {
				w.LiveShort += expected - r
			}
		}
	}
	w.Closed, w.ClosedRecv = e.winClosed, e.winRecv
	for code, n := range e.closeCodes {
		w.CloseCodes[fmt.Sprint(code)] = n
	}
	for msg, n := range e.errorCounts {
		w.Errors[msg] = n
	}
	e.mu.Unlock()
	w.Receipts = e.receipts.Load()
	w.Controls = e.controls.Load()
	w.Duplicates = e.duplicates.Load()
	w.Echoes = e.echoes.Load()
	w.EchoErrors = e.echoErrors.Load()
	w.Cycles = e.cycles.Load()
	w.ChurnFailed = e.churnFailed.Load()
	w.OpenNow = e.open.Load()

	merged := newHistogram()
	var last map[uint64]int64
	for _, s := range e.slots {
		s.mu.Lock()
		merged.Merge(s.hist)
		for seq, lat := range s.lastLat {
			if last == nil {
				last = make(map[uint64]int64)
			}
			last[seq] = max(last[seq], lat)
		}
		s.mu.Unlock()
	}
	enc, err := merged.Encode(hdrhistogram.V2CompressedEncodingCookieBase)
	if err != nil {
		return w, fmt.Errorf("bench: encode histogram: %w", err)
	}
	w.Histogram = enc
	if last != nil {
		w.LastLatency = make(map[string]int64, len(last))
		keys := make([]uint64, 0, len(last))
		for k := range last {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
		for _, k := range keys {
			w.LastLatency[fmt.Sprint(k)] = last[k]
		}
	}
	w.WorkerCPUSec, w.MaxRSSBytes = selfUsage()
	return w, nil
}
