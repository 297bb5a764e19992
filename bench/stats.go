package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// ServerStats is what the harness reads from a server's GET /stats. Both
// shapes are understood: fanout's, with the process figures under
// "process", connections under "server" and hub counters under "hub", and
// the reference servers', with rss_bytes, go_heap_bytes, goroutines,
// open_fds and connections at the top level. A figure the server does not
// report is -1.
type ServerStats struct {
	Connections     int64 `json:"connections"`
	AllConnections  int64 `json:"all_connections"` // fanout's only: WebSockets, handshakes and plain HTTP, the /stats request included
	RSSBytes        int64 `json:"rss_bytes"`
	RSSAnonBytes    int64 `json:"rss_anon_bytes"` // resident anonymous memory: not the binary's pages
	HeapBytes       int64 `json:"go_heap_bytes"`
	Goroutines      int64 `json:"goroutines"`
	OpenFDs         int64 `json:"open_fds"`
	Deliveries      int64 `json:"deliveries"`                // fanout's hub only
	Drops           int64 `json:"drops"`                     // fanout's hub only
	SlowDisconnects int64 `json:"slow_consumer_disconnects"` // fanout's hub only
	Clients         int64 `json:"clients"`                   // fanout's hub only: connections it serves
	Subscriptions   int64 `json:"subscriptions"`             // fanout's hub only
}

// add adds o, another server's figures, to s: the sum of a cluster's
// nodes. A figure one of them does not report (-1) is unknown in the sum.
func (s *ServerStats) add(o ServerStats) {
	for _, f := range []struct{ to, from *int64 }{
		{&s.Connections, &o.Connections}, {&s.AllConnections, &o.AllConnections},
		{&s.RSSBytes, &o.RSSBytes}, {&s.RSSAnonBytes, &o.RSSAnonBytes}, {&s.HeapBytes, &o.HeapBytes},
		{&s.Goroutines, &o.Goroutines}, {&s.OpenFDs, &o.OpenFDs}, {&s.Deliveries, &o.Deliveries},
		{&s.Drops, &o.Drops}, {&s.SlowDisconnects, &o.SlowDisconnects}, {&s.Clients, &o.Clients},
		{&s.Subscriptions, &o.Subscriptions},
	} {
		if *f.to < 0 || *f.from < 0 {
			*f.to = -1
		} else {
			*f.to += *f.from
		}
	}
}

// parseServerStats reads either shape of /stats.
func parseServerStats(b []byte) (ServerStats, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(b, &top); err != nil {
		return ServerStats{}, fmt.Errorf("bench: /stats is not a JSON object: %w", err)
	}
	scopes := []map[string]json.RawMessage{top}
	for _, name := range []string{"process", "server", "hub"} {
		var m map[string]json.RawMessage
		if raw, ok := top[name]; ok && json.Unmarshal(raw, &m) == nil {
			scopes = append(scopes, m)
		}
	}
	get := func(key string) int64 {
		for _, m := range scopes {
			if raw, ok := m[key]; ok {
				var v float64
				if json.Unmarshal(raw, &v) == nil {
					return int64(v)
				}
			}
		}
		return -1
	}
	conns, all := get("websockets"), get("connections") // fanout's: WebSockets only, as the peers count
	if conns < 0 {
		conns, all = all, -1
	}
	return ServerStats{
		Connections:     conns,
		AllConnections:  all,
		RSSBytes:        get("rss_bytes"),
		RSSAnonBytes:    get("rss_anon_bytes"),
		HeapBytes:       get("go_heap_bytes"),
		Goroutines:      get("goroutines"),
		OpenFDs:         get("open_fds"),
		Deliveries:      get("deliveries"),
		Drops:           get("drops"),
		SlowDisconnects: get("slow_consumer_disconnects"),
		Clients:         get("clients"),
		Subscriptions:   get("subscriptions"),
	}, nil
}

// fetchServerStats gets and parses url (the server's /stats).
func fetchServerStats(ctx context.Context, c *http.Client, url string) (ServerStats, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return ServerStats{}, fmt.Errorf("bench: stats request: %w", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return ServerStats{}, fmt.Errorf("bench: get %s: %w", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return ServerStats{}, fmt.Errorf("bench: read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return ServerStats{}, fmt.Errorf("bench: get %s: %s", url, resp.Status)
	}
	return parseServerStats(b)
}

// SockStat is the kernel's TCP socket accounting from /proc/net/sockstat.
// On loopback it counts both ends of every connection, the clients' and
// the server's.
type SockStat struct {
	SocketsUsed int64 `json:"sockets_used"`
	TCPInUse    int64 `json:"tcp_inuse"`
	TCPTimeWait int64 `json:"tcp_tw"`
	TCPAlloc    int64 `json:"tcp_alloc"`
	TCPMemBytes int64 `json:"tcp_mem_bytes"` // "mem" pages × page size
}

// readSockStat reads /proc/net/sockstat; on error every field is -1.
func readSockStat() SockStat {
	s := SockStat{-1, -1, -1, -1, -1}
	b, err := os.ReadFile("/proc/net/sockstat")
	if err != nil {
		return s
	}
	for line := range strings.Lines(string(b)) {
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseInt(f[i+1], 10, 64)
			if err != nil {
				continue
			}
			switch name + "." + f[i] {
			case "sockets.used":
				s.SocketsUsed = v
			case "TCP.inuse":
				s.TCPInUse = v
			case "TCP.tw":
				s.TCPTimeWait = v
			case "TCP.alloc":
				s.TCPAlloc = v
			case "TCP.mem":
				s.TCPMemBytes = v * int64(os.Getpagesize())
			}
		}
	}
	return s
}

// clockTicksPerSecond is USER_HZ, the unit of /proc/<pid>/stat's times; it
// is 100 on every Linux architecture Go supports.
const clockTicksPerSecond = 100

// processCPU returns the CPU time (user + system) that process pid has
// used, in seconds.
func processCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("bench: server cpu: %w", err)
	}
	// The command name, in parentheses, may hold spaces: split after it.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, fmt.Errorf("bench: server cpu: malformed /proc/%d/stat", pid)
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return 0, fmt.Errorf("bench: server cpu: short /proc/%d/stat", pid)
	}
	// f[0] is field 3 (state); utime and stime are fields 14 and 15.
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("bench: server cpu: malformed /proc/%d/stat", pid)
	}
	return float64(ut+st) / clockTicksPerSecond, nil
}

// processMemory returns the resident memory of process pid and its
// anonymous part (heap and stacks, not the binary's pages), in bytes, from
// /proc/PID/status: the same reading for every server, whatever its own
// /stats says.
func processMemory(pid int) (rss, anon int64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, fmt.Errorf("bench: server memory: %w", err)
	}
	rss, anon = -1, -1
	for line := range strings.Lines(string(b)) {
		key, value, ok := strings.Cut(line, ":")
		if !ok || (key != "VmRSS" && key != "RssAnon") {
			continue
		}
		f := strings.Fields(value) // "1234 kB"
		if len(f) != 2 || f[1] != "kB" {
			return 0, 0, fmt.Errorf("bench: server memory: malformed %s in /proc/%d/status", key, pid)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("bench: server memory: malformed %s in /proc/%d/status", key, pid)
		}
		if key == "VmRSS" {
			rss = kb << 10
		} else {
			anon = kb << 10
		}
	}
	if rss < 0 || anon < 0 {
		return 0, 0, fmt.Errorf("bench: server memory: no VmRSS or RssAnon in /proc/%d/status", pid)
	}
	return rss, anon, nil
}

// processOpenFileLimit returns the soft open-file limit of process pid, or
// -1 when it is unlimited or unknown.
func processOpenFileLimit(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", pid))
	if err != nil {
		return -1
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				if v, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return v
				}
			}
		}
	}
	return -1
}

// findListenerPID returns the pid of the local process that listens on TCP
// port, from /proc/net/tcp{,6} and the processes' fds; 0 if none is found
// (or /proc is not readable).
func findListenerPID(port int) int {
	inodes := map[string]bool{}
	for _, name := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(name)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			fl := strings.Fields(sc.Text())
			if len(fl) < 10 || fl[3] != "0A" { // 0A: LISTEN
				continue
			}
			_, hexPort, ok := strings.Cut(fl[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseInt(hexPort, 16, 32); err == nil && int(p) == port {
				inodes["socket:["+fl[9]+"]"] = true
			}
		}
		f.Close()
	}
	if len(inodes) == 0 {
		return 0
	}
	procs, _ := filepath.Glob("/proc/[0-9]*")
	for _, dir := range procs {
		fds, err := os.ReadDir(dir + "/fd")
		if err != nil {
			continue
		}
		for _, fd := range fds {
			link, err := os.Readlink(dir + "/fd/" + fd.Name())
			if err == nil && inodes[link] {
				pid, _ := strconv.Atoi(filepath.Base(dir))
				return pid
			}
		}
	}
	return 0
}

// portRange returns the kernel's ephemeral port range.
func portRange() (lo, hi int, err error) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 0, 0, fmt.Errorf("bench: ephemeral ports: %w", err)
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return 0, 0, fmt.Errorf("bench: ephemeral ports: malformed ip_local_port_range %q", b)
	}
	lo, err1 := strconv.Atoi(f[0])
	hi, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || hi < lo {
		return 0, 0, fmt.Errorf("bench: ephemeral ports: malformed ip_local_port_range %q", b)
	}
	return lo, hi, nil
}
