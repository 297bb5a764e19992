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
	RSSBytes   int64  `json:"rss_bytes"`
	HeapBytes  uint64 `json:"go_heap_bytes"`
	Goroutines int    `json:"goroutines"`
	OpenFDs    int    `json:"open_fds"`
	GoMaxProcs int    `json:"gomaxprocs"`
}

// readProcessStats reads RSS and open fds from /proc (Linux; -1 elsewhere)
// and the Go heap from runtime/metrics, which does not stop the world.
func readProcessStats() processStats {
	st := processStats{RSSBytes: -1, OpenFDs: -1, Goroutines: runtime.NumGoroutine(), GoMaxProcs: runtime.GOMAXPROCS(0)}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				if err == nil {
					st.RSSBytes = kb << 10
				}
			}
		}
	}
	if entries, err := os.ReadDir("/proc/self/fd"); err == nil {
		st.OpenFDs = len(entries)
	}
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() == metrics.KindUint64 {
		st.HeapBytes = sample[0].Value.Uint64()
	}
	return st
}
