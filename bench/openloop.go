package bench

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// defaultCompareRates are compare's open-loop rates when --rate is not
// given: every server is offered the same load.
const defaultCompareRates = "20,100,400"

// rateList is the value of --rate: messages per second, comma-separated.
type rateList []float64

func (l *rateList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, r := range *l {
		s[i] = strconv.FormatFloat(r, 'g', -1, 64)
	}
	return strings.Join(s, ",")
}

func (l *rateList) Set(v string) error {
	var out rateList
	for f := range strings.SplitSeq(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		r, err := strconv.ParseFloat(f, 64)
		if err != nil || r <= 0 || math.IsInf(r, 0) || math.IsNaN(r) {
			return fmt.Errorf("rate %q: want a positive number of messages per second", f)
		}
		out = append(out, r)
	}
	*l = out
	return nil
}

// rates runs the throughput scenario open loop at each of --rate in turn.
func (r *runner) rates(ctx context.Context) ([]*ThroughputResult, error) {
	var out []*ThroughputResult
	for _, rate := range r.o.Rates {
		x, err := r.throughput(ctx, rate)
		if err != nil {
			return out, fmt.Errorf("at %g messages/s: %w", rate, err)
		}
		out = append(out, x)
	}
	return out, nil
}

// openLoopOutcome is what a publishing loop did.
type openLoopOutcome struct {
	published  int64     // publishes answered with a seq
	failed     int64     // publishes that failed
	late       int64     // messages handed to a publisher over an interval after they were due
	publishers int       // most publishes in flight
	end        time.Time // when the last message went out (was handed to a publisher)
}

// openLoop publishes from start until end at rate messages per second: the
// i-th message is due at start + i/rate, and carries that time, so that its
// latency counts from when it was due, not from when a publisher got to it
// (no coordinated omission: a server slow to answer publishes pays for it
// in latency, not by being offered less). A message due while every
// publisher is busy starts one more, up to --publishers; past that it waits
// and counts as late when it goes out more than one interval after its time.
// A failed publish is counted, the first error logged, and the loop goes on.
func (r *runner) openLoop(ctx context.Context, rate float64, start, end time.Time, bar *bar) (openLoopOutcome, error) {
	var (
		out       openLoopOutcome
		published atomic.Int64
		failed    atomic.Int64
		errOnce   sync.Once
		firstErr  error
		wg        sync.WaitGroup
	)
	jobs := make(chan int64) // due times, unix nanoseconds; unbuffered: only an idle publisher takes one
	publisher := func() {
		defer wg.Done()
		for due := range jobs {
			_, err := r.publish(ctx, broadcastData(due, r.o.PayloadBytes))
			if err != nil {
				failed.Add(1)
				errOnce.Do(func() {
					firstErr = err
					r.log.Warn("throughput: a publish failed; the run goes on and reports it", "err", err)
				})
			} else {
				published.Add(1)
			}
		}
	}
	interval := time.Duration(float64(time.Second) / rate)
	var err error
loop:
	for i := 0; ; i++ {
		due := start.Add(time.Duration(float64(i) * float64(time.Second) / rate))
		if !due.Before(end) {
			break
		}
		if d := time.Until(due); d > 0 {
			if err = sleep(ctx, d); err != nil {
				break
			}
		}
		bar.Set(time.Since(start).Milliseconds())
		select {
		case jobs <- due.UnixNano():
			out.end = time.Now()
			continue
		default:
		}
		if out.publishers < r.o.Publishers {
			out.publishers++
			wg.Add(1)
			go publisher()
		}
		select {
		case jobs <- due.UnixNano():
		case <-ctx.Done():
			err = ctx.Err()
			break loop
		}
		out.end = time.Now()
		if out.end.Sub(due) > interval {
			out.late++
		}
	}
	close(jobs)
	wg.Wait()
	out.published, out.failed = published.Load(), failed.Load()
	if out.end.IsZero() {
		out.end = time.Now()
	}
	if err == nil && out.published == 0 && out.failed > 0 {
		err = fmt.Errorf("throughput: every publish failed, the first with: %w", firstErr)
	}
	return out, err
}
