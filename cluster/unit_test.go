package cluster

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// TestReconnectDelay: the wait doubles from 250 ms to 8 s, with up to half
// as much again of jitter.
func TestReconnectDelay(t *testing.T) {
	for n, base := range map[int]time.Duration{1: 250 * time.Millisecond, 2: 500 * time.Millisecond, 3: time.Second, 6: 8 * time.Second, 50: 8 * time.Second} {
		for range 100 {
			d := reconnectDelay(n)
			assert.GreaterOrEqual(t, d, base, "attempt %d", n)
			assert.LessOrEqual(t, d, base+base/2, "attempt %d", n)
		}
	}
}
