package contract

import (
	"encoding/json"
	"net/http"
	"os"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"
)

// Stats is what GET /stats reports.
type Stats struct {
	Server      string `json:"server"`
	Connections int64  `json:"connections"`    // open WebSocket connections (subscribers once subscribed, and echo)
	RSSBytes    int64  `json:"rss_bytes"`      // VmRSS of /proc/self/status; -1 where there is none
	RSSAnon     int64  `json:"rss_anon_bytes"` // RssAnon of /proc/self/status: heap and stacks, not the binary
	GoHeapBytes uint64 `json:"go_heap_bytes"`  // runtime/metrics /memory/classes/heap/objects:bytes
	Goroutines  int    `json:"goroutines"`
	OpenFDs     int    `json:"open_fds"` // entries of /proc/self/fd; -1 where there is none
	GoMaxProcs  int    `json:"gomaxprocs"`
}

// ReadStats reads the process numbers. It does not stop the world.
func ReadStats(server string, connections int64) Stats {
	st := Stats{
		Server:      server,
		Connections: connections,
		RSSBytes:    -1,
		RSSAnon:     -1,
		OpenFDs:     -1,
		Goroutines:  runtime.NumGoroutine(),
		GoMaxProcs:  runtime.GOMAXPROCS(0),
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for line := range strings.Lines(string(b)) {
			if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				if kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64); err == nil {
					st.RSSBytes = kb << 10
				}
			}
			if rest, ok := strings.CutPrefix(line, "RssAnon:"); ok {
				if kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64); err == nil {
					st.RSSAnon = kb << 10
				}
			}
		}
	}
	st.OpenFDs = countOpenFDs()
	sample := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(sample)
	if sample[0].Value.Kind() == metrics.KindUint64 {
		st.GoHeapBytes = sample[0].Value.Uint64()
	}
	return st
}

// StatsHandler serves GET /stats. connections is called once per request and
// must be safe for concurrent use.
func StatsHandler(server string, connections func() int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, ReadStats(server, connections()))
	})
}

// Healthz serves GET /healthz: 200 ok.
func Healthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("ok"))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
