package bench

import (
	"os/exec"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

func TestCPUList(t *testing.T) {
	var l cpuList
	require.NoError(t, l.Set("0, 2-4,3"))
	assert.Equal(t, cpuList{0, 2, 3, 4}, l)
	assert.Equal(t, "0,2,3,4", l.String())
	for _, bad := range []string{"x", "-1", "3-1", "1-", "2048"} {
		assert.Error(t, l.Set(bad), bad)
	}
}

// TestStartPinned: a child started pinned runs on that CPU alone, from its
// first instruction, and the parent's threads keep their affinity.
func TestStartPinned(t *testing.T) {
	var mine unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &mine))
	cpu := -1
	for c := range 1024 {
		if mine.IsSet(c) {
			cpu = c
			break
		}
	}
	require.GreaterOrEqual(t, cpu, 0)
	var out strings.Builder
	cmd := exec.Command("grep", "Cpus_allowed_list", "/proc/self/status")
	cmd.Stdout = &out
	require.NoError(t, startPinned(cmd, cpuList{cpu}))
	require.NoError(t, cmd.Wait())
	assert.Equal(t, "Cpus_allowed_list:\t"+strconv.Itoa(cpu), strings.TrimSpace(out.String()))

	var after unix.CPUSet
	require.NoError(t, unix.SchedGetaffinity(0, &after))
	assert.Equal(t, mine.Count(), after.Count(), "this thread's affinity is untouched")
}
