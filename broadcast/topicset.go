package broadcast

import (
	"iter"
	"slices"
)

// topicSet is a client's subscriptions, in the order they were made. The
// first is held inline and the rest behind a pointer, so that the set takes
// 16 bytes of the client, not a slice's 24, and a client of one topic (most
// are) allocates nothing for it: a client is then 48 bytes, the smaller size
// class, at one per connection. A zero topicSet is empty.
//
// A topicSet is not safe for concurrent use: a client's methods, which run
// one at a time, own it. A copy shares the rest with the original (see
// client.OnClose, which hands the set to its shard as it leaves).
type topicSet struct {
	first *Topic    // nil: the set is empty
	rest  *[]*Topic // the topics after first; nil until a second is added
}

// len returns the number of topics in the set.
func (s *topicSet) len() int {
	switch {
	case s.first == nil:
		return 0
	case s.rest == nil:
		return 1
	}
	return 1 + len(*s.rest)
}

// at returns the i-th topic, 0 <= i < s.len().
func (s *topicSet) at(i int) *Topic {
	if i == 0 {
		return s.first
	}
	return (*s.rest)[i-1]
}

// all yields the topics in order.
func (s topicSet) all() iter.Seq[*Topic] {
	return func(yield func(*Topic) bool) {
		if s.first == nil || !yield(s.first) || s.rest == nil {
			return
		}
		for _, t := range *s.rest {
			if !yield(t) {
				return
			}
		}
	}
}

// add appends t.
func (s *topicSet) add(t *Topic) {
	switch {
	case s.first == nil:
		s.first = t
	case s.rest == nil:
		s.rest = &[]*Topic{t}
	default:
		*s.rest = append(*s.rest, t)
	}
}

// removeAt removes and returns the i-th topic, 0 <= i < s.len(); the
// others keep their order.
func (s *topicSet) removeAt(i int) *Topic {
	t := s.at(i)
	if i == 0 {
		s.first = nil
		if s.rest == nil {
			return t
		}
		s.first = (*s.rest)[0]
		i = 1
	}
	if rest := slices.Delete(*s.rest, i-1, i); len(rest) == 0 {
		s.rest = nil
	} else {
		*s.rest = rest
	}
	return t
}
