package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestByteSize(t *testing.T) {
	for in, want := range map[string]int64{
		"0":      0,
		"4096":   4096,
		"64KiB":  64 << 10,
		"1MiB":   1 << 20,
		" 2 GiB": 2 << 30,
		"3KiB":   3 << 10,
	} {
		var b byteSize
		require.NoError(t, b.Set(in), in)
		assert.Equal(t, want, int64(b), in)
	}
	for _, in := range []string{"", "-1", "1.5MiB", "1MB", "1k", "KiB", "99999999999GiB"} {
		var b byteSize
		assert.Error(t, b.Set(in), in)
	}
	for b, want := range map[byteSize]string{0: "0", 1000: "1000", 1 << 20: "1MiB", 64 << 10: "64KiB", 3 << 30: "3GiB", 1536: "1536"} {
		assert.Equal(t, want, b.String())
	}
}
