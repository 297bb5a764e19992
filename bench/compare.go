package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Comparison is what "fanout bench compare" writes as OUT/compare.json: a
// report per server, measured the same way, in the order run.
type Comparison struct {
	Started time.Time       `json:"started"`
	Params  Params          `json:"params"`
	Servers []ServerOutcome `json:"servers"`
}

// ServerOutcome is one server's part of a comparison. Report is nil when
// the server was skipped or failed before it was measured.
type ServerOutcome struct {
	Name    string  `json:"name"`
	Skipped string  `json:"skipped,omitempty"` // why it was not run
	Error   string  `json:"error,omitempty"`   // why its run stopped
	Report  *Report `json:"report,omitempty"`
}

// errNoPeer is wrapped when a reference server's directory does not exist.
var errNoPeer = errors.New("no such reference server")

// modulePath is the fanout module's path, used to find its directory.
const modulePath = "github.com/fanout/fanout"

// Compare builds fanout and the reference servers of o.Servers and runs
// each in turn, on a fresh loopback port, through the same idle, fanout and
// open-loop throughput runs at o.Conns subscribers. It prints two markdown
// tables to stdout and writes OUT/compare.json and the chart.
func Compare(ctx context.Context, o *Options, stdout, stderr io.Writer, log *slog.Logger) error {
	if o.Token != "" || o.JWTSecret != "" {
		return errors.New("--token and --jwt-secret do not apply: compare runs its own servers, without authentication")
	}
	src := o.Src
	if src == "" {
		var err error
		if src, err = findModuleRoot(); err != nil {
			return err
		}
	}
	out, err := filepath.Abs(o.Out)
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if len(o.Rates) == 0 {
		// The same offered load for every server: open loop, never a
		// window that a server slow to answer publishes would shrink.
		_ = o.Rates.Set(defaultCompareRates)
	}
	servers := splitList(o.Servers)
	if len(servers) == 0 {
		return errors.New("--servers is empty")
	}
	loop := target{addr: netip.MustParseAddrPort("127.0.0.1:1"), loopback: true}
	plan, err := planFleet(o, loop, o.Conns)
	if err != nil {
		return err
	}
	fleet, err := startFleet(ctx, plan.Workers, o.ClientCPUs, stderr, log)
	if err != nil {
		return err
	}
	defer fleet.Close()

	cmp := &Comparison{Started: time.Now()}
	for _, name := range servers {
		if ctx.Err() != nil {
			break
		}
		oc := ServerOutcome{Name: name}
		build := o.build
		if build == nil {
			build = buildServer
		}
		bin, err := build(ctx, src, out, name, stderr)
		switch {
		case errors.Is(err, errNoPeer):
			oc.Skipped = err.Error()
			fmt.Fprintf(stderr, "compare: skipping %s: %v\n", name, err)
		case err != nil:
			oc.Error = err.Error()
			fmt.Fprintf(stderr, "compare: %s: %v\n", name, err)
		default:
			fmt.Fprintf(stderr, "compare: running %s\n", name)
			oc.Report, err = compareOne(ctx, o, plan, fleet, name, bin, out, stderr, log)
			if err != nil {
				oc.Error = err.Error()
				fmt.Fprintf(stderr, "compare: %s: %v\n", name, err)
			}
		}
		cmp.Servers = append(cmp.Servers, oc)
	}
	if len(cmp.Servers) > 0 && cmp.Servers[0].Report != nil {
		cmp.Params = cmp.Servers[0].Report.Params
	}

	fmt.Fprintf(stdout, "fanout bench compare: N = %d subscribers, fanout %d messages, throughput %v (%s)%s\n\n",
		o.Conns, o.Repeat, o.Duration, loadMode(o), pinning(o))
	writeTable(stdout, cmp)
	jsonPath := filepath.Join(out, "compare.json")
	errs := []error{}
	if err := writeJSON(jsonPath, cmp); err != nil {
		errs = append(errs, err)
	} else {
		fmt.Fprintf(stdout, "\nJSON: %s\n", jsonPath)
	}
	chart := o.Chart
	if chart == "" {
		chart = filepath.Join(out, "compare.png")
	}
	if err := drawChart(ctx, src, jsonPath, chart); err != nil {
		errs = append(errs, err)
	} else {
		fmt.Fprintf(stdout, "chart: %s\n", chart)
	}
	if ctx.Err() != nil {
		errs = append(errs, errInterrupted)
	}
	return errors.Join(errs...)
}

func loadMode(o *Options) string {
	if len(o.Rates) > 0 {
		return fmt.Sprintf("open loop at %s messages/s in turn, from up to %d publishers", o.Rates.String(), o.Publishers)
	}
	return fmt.Sprintf("closed loop, window %d", o.Window)
}

// pinning says which CPUs the servers and the clients ran on.
func pinning(o *Options) string {
	var s []string
	if len(o.ServerCPUs) > 0 {
		s = append(s, "servers on CPU "+o.ServerCPUs.String())
	}
	if len(o.ClientCPUs) > 0 {
		s = append(s, "clients on CPU "+o.ClientCPUs.String())
	}
	if len(s) == 0 {
		return ""
	}
	return "; " + strings.Join(s, ", ")
}

// findModuleRoot walks up from the working directory to the fanout
// module's go.mod.
func findModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("compare: %w", err)
	}
	for {
		b, err := os.ReadFile(filepath.Join(dir, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module "+modulePath+"\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("compare: the fanout module was not found above the working directory; run from its checkout or pass --src")
		}
		dir = parent
	}
}

// drawChart draws the chart from the JSON at jsonPath with the chart
// command (bench/chart), a module of its own, which keeps the plotting
// library out of the fanout module and binary.
func drawChart(ctx context.Context, src, jsonPath, chart string) error {
	cmd := exec.CommandContext(ctx, "go", "run", ".", "-in", jsonPath, "-out", chart)
	cmd.Dir = filepath.Join(src, "bench", "chart")
	var msg bytes.Buffer
	cmd.Stdout, cmd.Stderr = &msg, &msg
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("chart (%s in %s): %w\n%s", strings.Join(cmd.Args, " "), cmd.Dir, err, msg.Bytes())
	}
	return nil
}

// buildServer builds server name into dir and returns the binary's path.
func buildServer(ctx context.Context, src, dir, name string, stderr io.Writer) (string, error) {
	bin := filepath.Join(dir, name)
	var cmd *exec.Cmd
	if name == "fanout" {
		cmd = exec.CommandContext(ctx, "go", "build", "-o", bin, ".")
		cmd.Dir = src
	} else {
		peers := filepath.Join(src, "bench", "peers")
		if _, err := os.Stat(filepath.Join(peers, name)); errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%w: %s does not exist", errNoPeer, filepath.Join(peers, name))
		}
		cmd = exec.CommandContext(ctx, "go", "build", "-o", bin, "./"+name)
		cmd.Dir = peers
	}
	var msg bytes.Buffer
	cmd.Stdout, cmd.Stderr = &msg, &msg
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("build %s (%s in %s): %w\n%s", name, strings.Join(cmd.Args, " "), cmd.Dir, err, msg.Bytes())
	}
	return bin, nil
}

// compareOne runs one server and measures it.
func compareOne(ctx context.Context, o *Options, plan fleetPlan, fleet *Fleet, name, bin, dir string, stderr io.Writer, log *slog.Logger) (*Report, error) {
	addr, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{"--listen", addr}
	if name == "fanout" {
		args = []string{"serve", "--listen", addr, "--no-auth", "--log-level", "warn", "--shutdown-timeout", "3s"}
	}
	logPath := filepath.Join(dir, name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	defer logFile.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := startPinned(cmd, o.ServerCPUs); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	defer stopServer(cmd, exited, log)

	so := *o
	so.URL = "ws://" + addr
	so.PublishURL, so.StatsURL = "", ""
	so.ServerPID = cmd.Process.Pid
	t, err := resolveTarget(ctx, &so)
	if err != nil {
		return nil, err
	}
	r := &runner{o: &so, t: t, ts: []target{t}, plan: plan, fleet: fleet, httpc: newHTTPClient(), log: log, stderr: stderr, pid: cmd.Process.Pid, pids: []int{cmd.Process.Pid}}
	defer r.httpc.CloseIdleConnections()
	if err := r.waitUp(ctx, exited, logPath); err != nil {
		return nil, err
	}
	if err := checkServerFiles(r.pid, so.Conns); err != nil {
		return nil, err
	}
	rep := r.newReport("compare")
	rep.Server.Name = name
	start := time.Now()
	defer func() { rep.Seconds = time.Since(start).Seconds() }()

	before := int64(-1)
	if s, err := r.sample(ctx); err == nil {
		before = s.Server.Connections
	}
	if rep.Idle, rep.Dial, err = r.idle(ctx, so.Conns); err != nil {
		return rep, fmt.Errorf("idle: %w", err)
	}
	if rep.Fanout, err = r.fanout(ctx); err != nil {
		return rep, fmt.Errorf("fanout: %w", err)
	}
	if rep.Rates, err = r.rates(ctx); err != nil {
		return rep, fmt.Errorf("throughput: %w", err)
	}
	if err := r.closeAll(ctx, "subscriber", before); err != nil {
		return rep, fmt.Errorf("close: %w", err)
	}
	return rep, nil
}

// waitUp waits until the server answers /stats.
func (r *runner) waitUp(ctx context.Context, exited <-chan struct{}, logPath string) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		_, err := fetchServerStats(ctx, r.httpc, r.t.statsURL)
		if err == nil {
			return nil
		}
		select {
		case <-exited:
			return fmt.Errorf("the server exited at start; see %s", logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the server did not answer %s in 15 s: %w", r.t.statsURL, err)
		}
	}
}

// stopServer sends SIGTERM, waits a little, then kills.
func stopServer(cmd *exec.Cmd, exited <-chan struct{}, log *slog.Logger) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		return
	case <-time.After(8 * time.Second):
	}
	log.Warn("compare: server did not stop on SIGTERM; killing it", "pid", cmd.Process.Pid)
	_ = cmd.Process.Kill()
	<-exited
}

// freePort returns a loopback address with a port that was free a moment
// ago.
func freePort() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("compare: find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// writeTable prints the comparison as two markdown tables: memory and
// fanout latency, a row per server; then throughput, a row per server and
// rate.
func writeTable(w io.Writer, c *Comparison) {
	fmt.Fprintln(w, "| server | RSS/conn | anon RSS/conn | heap/conn | goroutines | handshakes/s | server CPU per handshake | fanout p50 | fanout p99 | fanout max | last receipt |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, s := range c.Servers {
		if s.Report == nil {
			why := s.Skipped
			if why == "" {
				why = "failed: " + firstLine(s.Error)
			}
			fmt.Fprintf(w, "| %s | %s |||||||||| \n", s.Name, why)
			continue
		}
		cells := []string{s.Name}
		rep := s.Report
		if x := rep.Idle; x != nil {
			cells = append(cells, fmtBytes(x.PerConn.RSSBytes), fmtBytes(x.PerConn.RSSAnonBytes), fmtBytes(x.PerConn.HeapBytes), fmtInt(x.After.Server.Goroutines))
		} else {
			cells = append(cells, "", "", "", "")
		}
		if d := rep.Dial; d != nil {
			perConn := "unknown"
			if us := d.ServerMicrosPerConn(); us >= 0 {
				perConn = fmt.Sprintf("%.0f µs", us)
			}
			cells = append(cells, fmt.Sprintf("%.0f", d.PerSecond), perConn)
		} else {
			cells = append(cells, "", "")
		}
		if x := rep.Fanout; x != nil {
			cells = append(cells, fmtUS(x.Latency.P50US), fmtUS(x.Latency.P99US), fmtUS(x.Latency.MaxUS), fmtUS(x.LastReceipt.P50US))
		} else {
			cells = append(cells, "", "", "", "")
		}
		if s.Error != "" {
			cells[len(cells)-1] += " (stopped: " + firstLine(s.Error) + ")"
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}

	fmt.Fprintln(w)
	fmt.Fprintln(w, "| server | offered msg/s | published msg/s | deliveries/s | server CPU-s per M deliveries | latency p50 | p99 | max | drops |")
	fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, s := range c.Servers {
		if s.Report == nil {
			continue
		}
		for _, x := range s.Report.Rates {
			published := fmt.Sprintf("%.1f", x.PublishRate)
			if x.MissedRate {
				published += fmt.Sprintf(" (MISSED: %d failed, %d late)", x.PublishErrors, x.Late)
			}
			drops := fmt.Sprint(x.Drops + x.LostToDisconnect)
			if x.Disconnects > 0 {
				drops += fmt.Sprintf(" (%d disconnects)", x.Disconnects)
			}
			fmt.Fprintf(w, "| %s | %g | %s | %.0f | %s | %s | %s | %s | %s |\n", s.Name, x.OfferedRate, published,
				x.DeliveriesPerSecond, fmtFloat(x.ServerCPUPerMillion, 2),
				fmtUS(x.Latency.P50US), fmtUS(x.Latency.P99US), fmtUS(x.Latency.MaxUS), drops)
		}
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
