package bench

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"
)

// fdReserve is the open files a worker needs beside its connections: the
// poller, pipes, the executable and the Go runtime's own.
const fdReserve = 64

// fleetPlan says how the client connections are spread: over how many
// worker processes and from which source addresses.
type fleetPlan struct {
	Workers        int      `json:"workers"`
	ConnsPerWorker int      `json:"conns_per_worker"` // at most
	Sources        []string `json:"sources"`          // none: the kernel's choice
	ConnsPerSource int      `json:"conns_per_source"` // at most
	PortsPerSource int      `json:"ports_per_source"` // the ephemeral port range's size
	OpenFileLimit  uint64   `json:"open_file_limit"`  // per worker process
}

// limitError is a check that failed before anything started: it says what
// would be exceeded and how to fix it.
type limitError struct {
	what, fix string
}

func (e *limitError) Error() string { return e.what + "\n  fix: " + e.fix }

// With --workers 0, a plan has a worker per connsPerRampWorker connections,
// up to rampWorkers, even where fewer would hold them.
const (
	rampWorkers        = 4
	connsPerRampWorker = 2000
)

// planFleet spreads n connections held at once over worker processes and
// source addresses, and checks them against the machine's limits: the
// open-file limit per process and the ephemeral ports per source address.
// Its errors say what to change.
func planFleet(o *Options, t target, n int) (fleetPlan, error) {
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fleetPlan{}, fmt.Errorf("bench: open-file limit: %w", err)
	}
	// Go raises the soft limit to the hard one at start-up, and so do
	// the workers, which are this same program.
	// uint64 conversions: the fields are int64 on FreeBSD.
	nofile := uint64(lim.Cur)
	if uint64(lim.Max) > nofile {
		nofile = uint64(lim.Max)
	}
	usable := int(min(nofile, 1<<30)) - fdReserve
	p := fleetPlan{OpenFileLimit: nofile}
	perWorker := min(o.MaxConnsPerWorker, usable)
	if perWorker < 1 {
		return p, &limitError{
			what: fmt.Sprintf("the open-file limit (RLIMIT_NOFILE) is %d, too low for any client connections", nofile),
			fix:  "raise it: ulimit -n 20000 (or higher)",
		}
	}
	p.Workers = o.Workers
	if p.Workers == 0 {
		// Enough for the open-file limit, and more for the ramp-up: one
		// worker process dials at most about 5,000 connections a second
		// on loopback (busy or not: 0.6 of a core), four about 10,000 to
		// 12,000.
		p.Workers = max((n+perWorker-1)/perWorker, min(rampWorkers, (n+connsPerRampWorker-1)/connsPerRampWorker))
	}
	p.Workers = max(1, min(p.Workers, n))
	p.ConnsPerWorker = (n + p.Workers - 1) / p.Workers
	if p.ConnsPerWorker > usable {
		need := (n + usable - 1) / usable
		return p, &limitError{
			what: fmt.Sprintf("%d connections over %d worker processes is %d per worker, but a process may open only %d files (RLIMIT_NOFILE, less %d for the worker itself)",
				n, p.Workers, p.ConnsPerWorker, nofile, fdReserve),
			fix: fmt.Sprintf("use --workers %d or more (or --workers 0 to choose), or raise the limit: ulimit -n %d", need, p.ConnsPerWorker+fdReserve),
		}
	}

	lo, hi, err := portRange()
	if err != nil {
		return p, err
	}
	p.PortsPerSource = hi - lo + 1
	switch {
	case o.Bind != "":
		p.Sources = splitList(o.Bind)
		for _, s := range p.Sources {
			if _, err := netip.ParseAddr(s); err != nil {
				return p, fmt.Errorf("--bind: %w", err)
			}
		}
	case t.loopback && t.addr.Addr().Is4():
		count := o.Sources
		if count == 0 {
			// Leave a fifth of each range for other sockets and
			// TIME_WAIT leftovers of earlier runs.
			perSource := max(1, p.PortsPerSource*4/5)
			count = max(p.Workers, (n+perSource-1)/perSource)
		}
		base, err := netip.ParseAddr(o.SourceBase)
		if err != nil || !base.Is4() || !base.IsLoopback() {
			return p, fmt.Errorf("--source-base: %q is not an IPv4 loopback address", o.SourceBase)
		}
		a := base
		for range count {
			if !a.IsLoopback() {
				return p, errors.New("--sources: ran out of 127.0.0.0/8 addresses")
			}
			p.Sources = append(p.Sources, a.String())
			a = a.Next()
		}
	}
	sources := max(1, len(p.Sources))
	p.ConnsPerSource = (n + sources - 1) / sources
	if p.ConnsPerSource > p.PortsPerSource {
		need := (n + p.PortsPerSource - 1) / p.PortsPerSource
		fix := fmt.Sprintf("use --sources %d or more, or widen the range: sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"", need)
		if !t.loopback {
			fix = fmt.Sprintf("give %d or more local addresses with --bind, or widen the range: sysctl -w net.ipv4.ip_local_port_range=\"1024 65535\"", need)
		}
		return p, &limitError{
			what: fmt.Sprintf("%d connections from %d source address(es) is %d per address, but the ephemeral port range (%d-%d, /proc/sys/net/ipv4/ip_local_port_range) has only %d ports",
				n, sources, p.ConnsPerSource, lo, hi, p.PortsPerSource),
			fix: fix,
		}
	}
	return p, nil
}

// checkServerFiles checks that server process pid may open n more files.
func checkServerFiles(pid, n int) error {
	if pid <= 0 {
		return nil
	}
	limit := processOpenFileLimit(pid)
	if limit < 0 || int64(n)+fdReserve <= limit {
		return nil
	}
	return &limitError{
		what: fmt.Sprintf("the server (pid %d) may open only %d files (its RLIMIT_NOFILE), fewer than the %d connections plus its own", pid, limit, n),
		fix:  fmt.Sprintf("restart the server with a higher limit (ulimit -n %d or more, or LimitNOFILE= in its unit), or lower -n", int64(n)+fdReserve),
	}
}
