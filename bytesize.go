package main

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// byteSize is a flag value in bytes: a plain number, or a number with a
// KiB, MiB or GiB suffix ("64KiB", "1MiB").
type byteSize int64

var byteUnits = []struct {
	suffix string
	n      int64
}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}}

// Set parses s.
func (b *byteSize) Set(orig string) error {
	s := strings.TrimSpace(orig)
	mult := int64(1)
	for _, u := range byteUnits {
		if num, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(num), u.n
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return fmt.Errorf("want bytes, a whole number with an optional KiB, MiB or GiB suffix: %w", err)
	}
	if n < 0 {
		return fmt.Errorf("want bytes, not a negative number")
	}
	if n > math.MaxInt64/mult {
		return fmt.Errorf("%q is too large", orig)
	}
	*b = byteSize(n * mult)
	return nil
}

// String formats b with the largest suffix that divides it.
func (b byteSize) String() string {
	for _, u := range byteUnits {
		if b != 0 && int64(b)%u.n == 0 {
			return strconv.FormatInt(int64(b)/u.n, 10) + u.suffix
		}
	}
	return strconv.FormatInt(int64(b), 10)
}
