package bench

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// cpuList is the value of --server-cpus and --client-cpus: CPU numbers, as
// taskset takes them ("0", "0,2", "1-3").
type cpuList []int

func (l *cpuList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, c := range *l {
		s[i] = strconv.Itoa(c)
	}
	return strings.Join(s, ",")
}

func (l *cpuList) Set(v string) error {
	var out cpuList
	for f := range strings.SplitSeq(v, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(f, "-")
		a, err := strconv.Atoi(lo)
		b := a
		if err == nil && isRange {
			b, err = strconv.Atoi(hi)
		}
		if err != nil || a < 0 || b < a || b >= 1024 {
			return fmt.Errorf("CPUs %q: want numbers or ranges such as 0, 1-3", f)
		}
		for c := a; c <= b; c++ {
			if !slices.Contains(out, c) {
				out = append(out, c)
			}
		}
	}
	*l = out
	return nil
}
