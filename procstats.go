package main

import (
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
)

// processStats is what /stats reports of the process itself.
type processStats struct {
	RSSBytes     int64  `json:"rss_bytes"`      // VmRSS: all resident pages, the binary's text included
	RSSAnonBytes int64  `json:"rss_anon_bytes"` // RssAnon: resident anonymous memory (heap, stacks)
	HeapBytes    uint64 `json:"go_heap_bytes"`
	Goroutines   int    `json:"goroutines"`
	OpenFDs      int    `json:"open_fds"`
	GoMaxProcs   int    `json:"gomaxprocs"`
}

// readProcessStats reads RSS and open fds from /proc (Linux; -1 elsewhere)
// and the Go heap from runtime/metrics, which does not stop the world.
func readProcessStats() processStats {
	st := processStats{RSSBytes: -1, RSSAnonBytes: -1, OpenFDs: -1, Goroutines: runtime.NumGoroutine(), GoMaxProcs: runtime.GOMAXPROCS(0)}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				st.RSSBytes = parseKB(rest)
			}
			if rest, ok := strings.CutPrefix(line, "RssAnon:"); ok {
				st.RSSAnonBytes = parseKB(rest)
			}
		}
	}
	st.OpenFDs = countOpenFDs()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() == metrics.KindUint64 {
		st.HeapBytes = sample[0].Value.Uint64()
	}
	return st
}

// parseKB parses a /proc/self/status value like "  1234 kB" into bytes, or
// -1.
func parseKB(s string) int64 {
	kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(s), " kB"), 10, 64)
	if err != nil {
		return -1
	}
	return kb << 10
}
