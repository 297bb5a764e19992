package wsconn

import (
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
)

// Handshake statuses and close codes are counted in fixed tables of atomic
// counters, read at scrape time: counting costs no lock and no allocation.

// countedStatuses are the handshake refusals counted one by one; others
// count as "other".
var countedStatuses = [...]int{400, 401, 403, 404, 405, 426, 431, 503}

// countedCloses are the close codes counted one by one; others count as
// "other".
var countedCloses = [...]ws.StatusCode{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 4001, 4008}

// outcomes holds the counters.
type outcomes struct {
	status [len(countedStatuses) + 1]atomic.Uint64 // the last: other
	closes [len(countedCloses) + 1]atomic.Uint64   // the last: other
}

// countStatus counts a handshake refused with status, and logs it (see
// refusalLog).
func (s *Server) countStatus(status int, reason string) {
	i := statusIndex(status)
	s.outcomes.status[i].Add(1)
	s.logRefusalAt(i, status, reason)
}

// countClose counts a close frame sent with code.
func (s *Server) countClose(code ws.StatusCode) {
	for i, c := range countedCloses {
		if c == code {
			s.outcomes.closes[i].Add(1)
			return
		}
	}
	s.outcomes.closes[len(countedCloses)].Add(1)
}

// statusOf returns the status code of an HTTP response, or 0.
func statusOf(resp []byte) int {
	// "HTTP/1.1 401 Unauthorized\r\n"
	if len(resp) < 12 {
		return 0
	}
	n, err := strconv.Atoi(string(resp[9:12]))
	if err != nil {
		return 0
	}
	return n
}

// HandshakeStatuses returns the handshakes refused, by the status of the
// answer ("400", "401", …, "other"); refusals at accept (503 for a limit)
// are in Stats.Refused, not here.
func (s *Server) HandshakeStatuses() map[string]uint64 {
	m := make(map[string]uint64, len(countedStatuses)+1)
	for i, st := range countedStatuses {
		m[strconv.Itoa(st)] = s.outcomes.status[i].Load()
	}
	m["other"] = s.outcomes.status[len(countedStatuses)].Load()
	return m
}

// CloseCodes returns the close frames sent, by code ("1000", …, "other").
func (s *Server) CloseCodes() map[string]uint64 {
	m := make(map[string]uint64, len(countedCloses)+1)
	for i, c := range countedCloses {
		m[strconv.Itoa(int(c))] = s.outcomes.closes[i].Load()
	}
	m["other"] = s.outcomes.closes[len(countedCloses)].Load()
	return m
}

// refusalLog logs refused handshakes at info, at most one line per status
// a second, with the number refused since the previous line: a flood of
// refusals costs a few lines, not one each. It logs the status and the
// reason the server gave, never a request's headers or URL, which may hold
// a token.
//
// Refusals held back within a second are logged with the next refusal of
// their status or, if none comes, by the sweep (flushRefusals), with the
// last one's reason.
type refusalLog struct {
	mu      sync.Mutex
	last    [len(countedStatuses) + 1]time.Time
	pending [len(countedStatuses) + 1]uint64
	// status and reason: of the last refusal held back.
	status [len(countedStatuses) + 1]int
	reason [len(countedStatuses) + 1]string
}

// statusIndex returns status's index in countedStatuses, or the index of
// "other".
func statusIndex(status int) int {
	for i, st := range countedStatuses {
		if st == status {
			return i
		}
	}
	return len(countedStatuses)
}

// refusalLine is a line of the refusal log: count refusals of status
// since the previous line, the last for reason.
type refusalLine struct {
	status int
	reason string
	count  uint64
}

// note counts a refusal with status, at index i of the table, at now, and
// returns the line to log if its status has had none for a second.
func (r *refusalLog) note(now time.Time, i, status int, reason string) (refusalLine, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pending[i]++
	if now.Sub(r.last[i]) < time.Second {
		r.status[i], r.reason[i] = status, reason
		return refusalLine{}, false
	}
	l := refusalLine{status, reason, r.pending[i]}
	r.pending[i], r.last[i], r.reason[i] = 0, now, ""
	return l, true
}

// due appends to lines those of the refusals held back whose status has
// had no line for a second at now, and returns them.
func (r *refusalLog) due(now time.Time, lines []refusalLine) []refusalLine {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, n := range r.pending {
		if n > 0 && now.Sub(r.last[i]) >= time.Second {
			lines = append(lines, refusalLine{r.status[i], r.reason[i], n})
			r.pending[i], r.last[i], r.reason[i] = 0, now, ""
		}
	}
	return lines
}

// logRefusal logs, within the rate, a handshake refused with status for
// reason.
func (s *Server) logRefusal(status int, reason string) {
	s.logRefusalAt(statusIndex(status), status, reason)
}

// logRefusalAt is logRefusal for the status at index i of the table.
func (s *Server) logRefusalAt(i, status int, reason string) {
	if l, ok := s.refusals.note(s.now(), i, status, reason); ok {
		s.logRefusalLine(l)
	}
}

// flushRefusals logs the refusals held back whose status has had no line
// for a second at now: the last of a burst would otherwise wait for the
// next refusal of its status, which may never come. The sweep calls it on
// each tick, and once more, with a time a second ahead, as it stops.
func (s *Server) flushRefusals(now time.Time) {
	var buf [len(countedStatuses) + 1]refusalLine
	for _, l := range s.refusals.due(now, buf[:0]) {
		s.logRefusalLine(l)
	}
}

func (s *Server) logRefusalLine(l refusalLine) {
	s.log.Info("handshake refused", "status", l.status, "reason", l.reason, "count", l.count)
}
