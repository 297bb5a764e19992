package client

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestBackoff: each wait is drawn below a ceiling that doubles from min up
// to max, and stays there however many attempts.
func TestBackoff(t *testing.T) {
	b := backoff{min: 100 * time.Millisecond, max: 3 * time.Second}
	ceils := []time.Duration{100, 200, 400, 800, 1600, 3000, 3000}
	for i, c := range ceils {
		c *= time.Millisecond
		var most time.Duration
		for range 200 {
			bb := b
			d := bb.next()
			assert.GreaterOrEqual(t, d, time.Duration(0))
			assert.Less(t, d, c, "attempt %d", i)
			most = max(most, d)
		}
		assert.Greater(t, most, c/2, "attempt %d: the jitter spans the range", i)
		b.next()
	}
	b.attempt = 1000 // no overflow
	assert.Less(t, b.next(), 3*time.Second)
}
