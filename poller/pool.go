package poller

import "sync"

// Pool is a bounded pool of worker goroutines that run jobs of type T.
//
// Submit and Workers are safe for concurrent use. Close must not run
// concurrently with Submit, and Submit must not be called after Close.
type Pool[T any] struct {
	jobs      chan T
	workers   int
	wg        sync.WaitGroup
	closeOnce sync.Once
}

// NewPool starts workers goroutines; each runs fn(worker, job) for submitted
// jobs, worker in [0, workers), so callers can keep per-worker buffers. A
// worker runs one job at a time, so fn may use the buffers of its worker index
// without locking. queue bounds pending jobs (jobs submitted but not yet taken
// by a worker); Submit blocks when the queue is full, which pushes back onto
// the submitter (the poller). queue may be 0: Submit then waits for an idle
// worker.
//
// NewPool panics if workers < 1 or queue < 0.
func NewPool[T any](workers, queue int, fn func(worker int, job T)) *Pool[T] {
	if workers < 1 {
		panic("poller: NewPool: workers must be at least 1")
	}
	if queue < 0 {
		panic("poller: NewPool: negative queue")
	}
	if fn == nil {
		panic("poller: NewPool: nil fn")
	}
	p := &Pool[T]{
		jobs:    make(chan T, queue),
		workers: workers,
	}
	p.wg.Add(workers)
	for w := range workers {
		go p.work(w, fn)
	}
	return p
}

func (p *Pool[T]) work(worker int, fn func(worker int, job T)) {
	defer p.wg.Done()
	for job := range p.jobs {
		fn(worker, job)
	}
}

// Submit queues job for a worker. It blocks while the queue is full.
//
// A job that submits to its own pool can deadlock once every worker does so
// with the queue full; hand such follow-up work back through the poller (Arm)
// instead. Submit must not be called after or concurrently with Close.
func (p *Pool[T]) Submit(job T) {
	p.jobs <- job
}

// TrySubmit queues job if the queue has room, without blocking, and
// reports whether it did. It is for submitters that must never wait for the
// workers, such as those holding a lock a worker may be waiting for.
// TrySubmit must not be called after or concurrently with Close.
func (p *Pool[T]) TrySubmit(job T) bool {
	select {
	case p.jobs <- job:
		return true
	default:
		return false
	}
}

// Workers returns the number of worker goroutines, which bounds the worker
// index passed to fn.
func (p *Pool[T]) Workers() int {
	return p.workers
}

// Close stops accepting jobs and waits until every worker has finished: jobs
// already queued are run, not dropped. It must not be called from a job.
// Calling Close more than once is a no-op.
func (p *Pool[T]) Close() {
	p.closeOnce.Do(func() {
		close(p.jobs)
		p.wg.Wait()
	})
}
