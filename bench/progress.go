package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/schollz/progressbar/v3"
)

// bar is a progress bar on stderr, or nothing when progress is off: with
// --quiet, or when stderr is not a terminal. Its methods are safe on a nil
// bar.
type bar struct {
	pb *progressbar.ProgressBar
}

// newBar starts a progress bar towards total.
func (r *runner) newBar(total int64, desc string) *bar {
	if r.o.Quiet || !isTerminal(r.stderr) || total <= 0 {
		return nil
	}
	w := r.stderr
	return &bar{pb: progressbar.NewOptions64(total,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetDescription(desc),
		progressbar.OptionShowCount(),
		progressbar.OptionSetPredictTime(true),
		progressbar.OptionSetElapsedTime(true),
		progressbar.OptionThrottle(100*time.Millisecond),
		progressbar.OptionSetWidth(30),
		progressbar.OptionOnCompletion(func() { fmt.Fprintln(w) }),
	)}
}

// Set moves the bar to n.
func (b *bar) Set(n int64) {
	if b != nil {
		_ = b.pb.Set64(min(n, b.pb.GetMax64()))
	}
}

// Done completes the bar.
func (b *bar) Done() {
	if b != nil {
		_ = b.pb.Finish()
	}
}

// timedBar shows a bar that fills over d, and returns after d or when ctx
// ends (with ctx's error).
func (r *runner) timedBar(ctx context.Context, desc string, d time.Duration) error {
	b := r.newBar(d.Milliseconds(), desc)
	defer b.Done()
	start := time.Now()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		el := time.Since(start)
		if el >= d {
			return nil
		}
		b.Set(el.Milliseconds())
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// cyclesBar shows the fleet's churn cycles, towards n, until ctx ends; it
// returns ctx's error.
func (r *runner) cyclesBar(ctx context.Context, desc string, n int64) error {
	b := r.newBar(n, desc)
	defer b.Done()
	for {
		b.Set(r.fleet.progress(r.win).Cycles)
		r.fleet.wait(ctx, 100*time.Millisecond)
		if err := ctx.Err(); err != nil {
			return err
		}
	}
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// syncWriter serializes writes to w, for a writer shared by goroutines
// (logs, progress bars and the workers' stderr copied by os/exec).
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

// lockedWriter returns w itself if it is an *os.File, whose writes are
// already safe for concurrent use, and w behind a mutex otherwise.
func lockedWriter(w io.Writer) io.Writer {
	switch w.(type) {
	case *os.File, *syncWriter:
		return w
	}
	return &syncWriter{w: w}
}

func (s *syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}
