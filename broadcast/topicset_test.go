package broadcast

import (
	"slices"
	"strconv"
	"testing"
	"unsafe"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// names returns the names of s's topics, in order, by at and by all.
func names(t *testing.T, s *topicSet) []string {
	t.Helper()
	var byAt, byAll []string
	for i := range s.len() {
		byAt = append(byAt, s.at(i).name)
	}
	for tp := range s.all() {
		byAll = append(byAll, tp.name)
	}
	require.Equal(t, byAt, byAll, "at and all agree")
	return byAll
}

func TestTopicSet(t *testing.T) {
	topics := make([]*Topic, 5)
	for i := range topics {
		topics[i] = &Topic{name: strconv.Itoa(i)}
	}
	var s topicSet
	assert.Empty(t, names(t, &s))
	for _, tp := range topics {
		s.add(tp)
	}
	assert.Equal(t, []string{"0", "1", "2", "3", "4"}, names(t, &s))

	assert.Same(t, topics[2], s.removeAt(2)) // in the rest
	assert.Equal(t, []string{"0", "1", "3", "4"}, names(t, &s))
	assert.Same(t, topics[0], s.removeAt(0)) // the first: the rest's first takes its place
	assert.Equal(t, []string{"1", "3", "4"}, names(t, &s))
	assert.Same(t, topics[4], s.removeAt(2)) // the last
	assert.Equal(t, []string{"1", "3"}, names(t, &s))
	assert.Same(t, topics[1], s.removeAt(0))
	assert.Equal(t, []string{"3"}, names(t, &s))
	assert.Nil(t, s.rest, "one topic: nothing behind the pointer")
	s.add(topics[0])
	assert.Equal(t, []string{"3", "0"}, names(t, &s))
	assert.Same(t, topics[0], s.removeAt(1))
	assert.Same(t, topics[3], s.removeAt(0))
	assert.Equal(t, topicSet{}, s, "empty again")

	// all stops when asked to.
	for _, tp := range topics {
		s.add(tp)
	}
	var seen []string
	for tp := range s.all() {
		if seen = append(seen, tp.name); len(seen) == 2 {
			break
		}
	}
	assert.Equal(t, []string{"0", "1"}, seen)
	assert.True(t, slices.Equal([]string{"0", "1", "2", "3", "4"}, names(t, &s)))
}

// TestTopicSetOneAllocatesNothing: a client of one topic, as most are,
// holds it in the set itself.
func TestTopicSetOneAllocatesNothing(t *testing.T) {
	tp := &Topic{name: "a"}
	allocs := testing.AllocsPerRun(100, func() {
		var s topicSet
		s.add(tp)
		if s.removeAt(0) != tp {
			t.Fatal("removed another topic")
		}
	})
	assert.Zero(t, allocs)
}

// TestClientSize: there is a client per connection; 48 bytes is its size
// class (64 before the topics were a topicSet).
func TestClientSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("sizes are for 64-bit platforms")
	}
	assert.LessOrEqual(t, unsafe.Sizeof(client{}), uintptr(48))
}
