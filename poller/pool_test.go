package poller

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPoolRunsAllJobs(t *testing.T) {
	const (
		workers = 4
		jobs    = 10000
	)
	var (
		sum        atomic.Int64
		count      atomic.Int64
		badWorker  atomic.Int64
		perWorker  [workers]int // each worker touches only its own slot
		seenWorker [workers]atomic.Bool
	)
	p := NewPool(workers, 8, func(worker, job int) {
		if worker < 0 || worker >= workers {
			badWorker.Add(1)
			return
		}
		perWorker[worker]++ // the race detector checks one job at a time per worker
		seenWorker[worker].Store(true)
		sum.Add(int64(job))
		count.Add(1)
	})
	assert.Equal(t, workers, p.Workers())
	for i := 1; i <= jobs; i++ {
		p.Submit(i)
	}
	p.Close()

	assert.Zero(t, badWorker.Load())
	assert.Equal(t, int64(jobs), count.Load())
	assert.Equal(t, int64(jobs*(jobs+1)/2), sum.Load())
	total := 0
	for _, n := range perWorker {
		total += n
	}
	assert.Equal(t, jobs, total)

	p.Close() // idempotent
}

func TestPoolSubmitBlocksWhenFull(t *testing.T) {
	gate := make(chan struct{})
	started := make(chan int, 3)
	var done atomic.Int32
	p := NewPool(1, 1, func(_ int, job int) {
		started <- job
		<-gate
		done.Add(1)
	})

	p.Submit(1)
	require.Equal(t, 1, <-started) // the worker holds job 1
	p.Submit(2)                    // fills the queue

	submitted := make(chan struct{})
	go func() {
		p.Submit(3)
		close(submitted)
	}()
	// Submit(3) must wait for room. Waiting here can only let a bug go
	// unnoticed, never fail a correct pool.
	select {
	case <-submitted:
		t.Fatal("Submit returned with the queue full")
	case <-time.After(20 * time.Millisecond):
	}

	close(gate) // the worker drains: 1, 2, then 3
	select {
	case <-submitted:
	case <-time.After(waitTimeout):
		t.Fatal("Submit did not proceed once the queue had room")
	}
	p.Close()
	assert.Equal(t, int32(3), done.Load())
	assert.Equal(t, 2, <-started)
	assert.Equal(t, 3, <-started)
}

func TestPoolCloseWaitsAndDrains(t *testing.T) {
	gate := make(chan struct{})
	var (
		mu  sync.Mutex
		ran []int
	)
	p := NewPool(2, 16, func(_ int, job int) {
		<-gate
		mu.Lock()
		ran = append(ran, job)
		mu.Unlock()
	})
	for i := range 10 {
		p.Submit(i)
	}

	closed := make(chan struct{})
	go func() {
		p.Close()
		close(closed)
	}()
	select {
	case <-closed:
		t.Fatal("Close returned while jobs were running")
	case <-time.After(20 * time.Millisecond):
	}

	close(gate)
	select {
	case <-closed:
	case <-time.After(waitTimeout):
		t.Fatal("Close did not return")
	}
	mu.Lock()
	defer mu.Unlock()
	assert.ElementsMatch(t, []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, ran, "queued jobs are run, not dropped")
}

func TestNewPoolPanics(t *testing.T) {
	fn := func(int, int) {}
	assert.Panics(t, func() { NewPool(0, 1, fn) })
	assert.Panics(t, func() { NewPool(1, -1, fn) })
	assert.Panics(t, func() { NewPool[int](1, 1, nil) })
}

func BenchmarkPoolSubmit(b *testing.B) {
	var wg sync.WaitGroup
	p := NewPool(4, 1024, func(int, int) { wg.Done() })
	defer p.Close()
	b.ReportAllocs()
	for b.Loop() {
		wg.Add(1)
		p.Submit(1)
	}
	wg.Wait()
}

func TestPoolTrySubmit(t *testing.T) {
	gate := make(chan struct{})
	started := make(chan int, 1)
	ran := make(chan int, 3)
	p := NewPool(1, 1, func(_ int, job int) {
		if job == 1 {
			started <- job
			<-gate
		}
		ran <- job
	})
	require.True(t, p.TrySubmit(1))
	<-started                       // the only worker is busy with job 1
	require.True(t, p.TrySubmit(2)) // the queue has room for one
	// Full: TrySubmit refuses at once instead of waiting.
	assert.False(t, p.TrySubmit(3))
	close(gate)
	p.Close()
	close(ran)
	var got []int
	for j := range ran {
		got = append(got, j)
	}
	assert.Equal(t, []int{1, 2}, got)
}
