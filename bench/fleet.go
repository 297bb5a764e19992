package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"time"
)

// Fleet is the set of worker processes that hold the client connections,
// driven by the harness over their stdin and stdout.
type Fleet struct {
	log     *slog.Logger
	workers []*workerProc
	changed chan struct{} // signalled (without blocking) on every progress event
}

// workerProc is one worker process as the parent sees it.
type workerProc struct {
	id     int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	pid    int
	nofile uint64

	callMu  sync.Mutex // one command at a time
	replies chan event // reply and error events, in order
	exited  chan struct{}
	changed chan struct{} // the fleet's

	mu   sync.Mutex // guards prog and readErr
	prog progress
	err  error
}

// workerCommand returns the command line that starts a worker: this
// executable, with the hidden "bench worker" subcommand. The WorkerEnv
// variable marks it too, for test binaries, whose TestMain checks it.
func workerCommand() (string, []string) {
	exe, err := os.Executable()
	if err != nil {
		exe = os.Args[0]
	}
	return exe, []string{"bench", "worker"}
}

// startFleet starts k workers and waits for each one's hello.
func startFleet(ctx context.Context, k int, cpus cpuList, stderr io.Writer, log *slog.Logger) (*Fleet, error) {
	exe, args := workerCommand()
	stderr = lockedWriter(stderr)
	f := &Fleet{log: log, changed: make(chan struct{}, 1)}
	for i := range k {
		w, err := startWorker(ctx, i, exe, args, cpus, stderr, f.changed)
		if err != nil {
			f.Close()
			return nil, err
		}
		f.workers = append(f.workers, w)
	}
	return f, nil
}

func startWorker(ctx context.Context, id int, exe string, args []string, cpus cpuList, stderr io.Writer, changed chan struct{}) (*workerProc, error) {
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), WorkerEnv+"=1")
	cmd.Stderr = stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: worker %d: %w", id, err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("bench: worker %d: %w", id, err)
	}
	if err := startPinned(cmd, cpus); err != nil {
		return nil, fmt.Errorf("bench: start worker %d (%s): %w", id, exe, err)
	}
	w := &workerProc{
		id:      id,
		cmd:     cmd,
		stdin:   stdin,
		pid:     cmd.Process.Pid,
		replies: make(chan event, 16),
		exited:  make(chan struct{}),
		changed: changed,
	}
	hello := make(chan event, 1)
	go w.read(stdout, hello)
	select {
	case ev := <-hello:
		w.nofile = ev.NoFile
		return w, nil
	case <-w.exited:
		_ = cmd.Wait()
		return nil, fmt.Errorf("bench: worker %d exited before it said hello: %w", id, w.readErr())
	case <-time.After(10 * time.Second):
	case <-ctx.Done():
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	return nil, fmt.Errorf("bench: worker %d did not say hello in time", id)
}

// read dispatches the worker's events until its stdout ends.
func (w *workerProc) read(stdout io.Reader, hello chan<- event) {
	defer close(w.exited)
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 256<<20)
	for sc.Scan() {
		var ev event
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			w.setErr(fmt.Errorf("bad event from worker %d: %w", w.id, err))
			continue
		}
		switch ev.Ev {
		case "hello":
			hello <- ev
		case "progress":
			if ev.Progress != nil {
				w.mu.Lock()
				w.prog = *ev.Progress
				w.mu.Unlock()
				select {
				case w.changed <- struct{}{}:
				default:
				}
			}
		default:
			w.replies <- ev
		}
	}
	if err := sc.Err(); err != nil {
		w.setErr(fmt.Errorf("read from worker %d: %w", w.id, err))
	} else {
		w.setErr(fmt.Errorf("worker %d exited", w.id))
	}
}

func (w *workerProc) setErr(err error) {
	w.mu.Lock()
	if w.err == nil {
		w.err = err
	}
	w.mu.Unlock()
}

func (w *workerProc) readErr() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// call sends cmd and waits for its reply, which it decodes into reply
// (unless nil).
func (w *workerProc) call(ctx context.Context, cmd command, reply any, timeout time.Duration) error {
	w.callMu.Lock()
	defer w.callMu.Unlock()
	b, err := json.Marshal(cmd)
	if err != nil {
		return fmt.Errorf("bench: encode %s: %w", cmd.Op, err)
	}
	if _, err := w.stdin.Write(append(b, '\n')); err != nil {
		return fmt.Errorf("bench: send %s to worker %d: %w", cmd.Op, w.id, err)
	}
	var timer <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		timer = t.C
	}
	select {
	case ev := <-w.replies:
		if ev.Ev == "error" {
			return fmt.Errorf("bench: worker %d: %s: %s", w.id, cmd.Op, ev.Error)
		}
		if reply != nil {
			if err := json.Unmarshal(ev.Reply, reply); err != nil {
				return fmt.Errorf("bench: worker %d: decode %s reply: %w", w.id, cmd.Op, err)
			}
		}
		return nil
	case <-w.exited:
		return fmt.Errorf("bench: worker %d: %s: %w", w.id, cmd.Op, w.readErr())
	case <-timer:
		return fmt.Errorf("bench: worker %d: no reply to %s within %v", w.id, cmd.Op, timeout)
	case <-ctx.Done():
		return fmt.Errorf("bench: worker %d: %s: %w", w.id, cmd.Op, ctx.Err())
	}
}

// wait blocks until a progress event arrives, d passes or ctx ends.
func (f *Fleet) wait(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-f.changed:
	case <-t.C:
	case <-ctx.Done():
	}
}

// Size returns the number of workers.
func (f *Fleet) Size() int { return len(f.workers) }

// each runs call(i, w) for every worker concurrently and joins the errors.
func (f *Fleet) each(call func(i int, w *workerProc) error) error {
	errs := make([]error, len(f.workers))
	var wg sync.WaitGroup
	for i, w := range f.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = call(i, w)
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// broadcastCall sends the same command to every worker and decodes the
// replies into a slice.
func broadcastCall[T any](ctx context.Context, f *Fleet, cmd command, timeout time.Duration) ([]T, error) {
	out := make([]T, len(f.workers))
	err := f.each(func(i int, w *workerProc) error {
		return w.call(ctx, cmd, &out[i], timeout)
	})
	return out, err
}

// progress returns the sum of the workers' latest counters. The window
// counters of a worker that has not reported window win yet count as 0.
func (f *Fleet) progress(win uint32) progress {
	p := progress{Win: win}
	for _, w := range f.workers {
		w.mu.Lock()
		q := w.prog
		w.mu.Unlock()
		p.Open += q.Open
		p.DialFails += q.DialFails
		if q.Win != win {
			continue
		}
		p.Receipts += q.Receipts
		p.Echoes += q.Echoes
		p.Cycles += q.Cycles
		p.ChurnFailed += q.ChurnFailed
	}
	return p
}

// PIDs returns the workers' process ids.
func (f *Fleet) PIDs() []int {
	pids := make([]int, len(f.workers))
	for i, w := range f.workers {
		pids[i] = w.pid
	}
	return pids
}

// Close ends the workers: it closes their stdin, which makes them release
// their connections and exit, and kills those still running after a
// grace period.
func (f *Fleet) Close() {
	for _, w := range f.workers {
		_ = w.stdin.Close()
	}
	for _, w := range f.workers {
		select {
		case <-w.exited:
		case <-time.After(10 * time.Second):
			f.log.Warn("bench: worker did not exit; killing it", "worker", w.id, "pid", w.pid)
			_ = w.cmd.Process.Kill()
		}
		_ = w.cmd.Wait()
	}
	f.workers = nil
}
