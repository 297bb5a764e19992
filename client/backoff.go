package client

import (
	"math/rand/v2"
	"time"
)

// backoff is exponential backoff with full jitter: the n-th wait is drawn
// uniformly from [0, min(max, min·2ⁿ)), so that clients that lost a server
// together do not come back together.
type backoff struct {
	min, max time.Duration
	attempt  int
}

// next returns the next wait and counts an attempt.
func (b *backoff) next() time.Duration {
	ceil := b.max
	if b.attempt < 32 && b.min<<b.attempt < b.max && b.min<<b.attempt > 0 {
		ceil = b.min << b.attempt
	}
	b.attempt++
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil)
}
