package broadcast

import (
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/auth"
)

func TestParseSince(t *testing.T) {
	for _, tc := range []struct {
		item, topic, epoch string
		seq                uint64
		ok                 bool
	}{
		{"a:41", "a", "", 41, true},
		{"a:41@dn2jiwxx0fw5", "a", "dn2jiwxx0fw5", 41, true},
		{"user:alice:7", "user:alice", "", 7, true},
		{"user:a@b.c:7@k2", "user:a@b.c", "k2", 7, true},
		{"a:0@z", "a", "z", 0, true},
		{"a", "", "", 0, false},
		{"a:", "", "", 0, false},
		{"a:x", "", "", 0, false},
		{"a:1@", "", "", 0, false},
		{"a:1@UPPER", "", "", 0, false},
		{"a:1@with-dash", "", "", 0, false},
		{"a:1@0123456789abcdefg", "", "", 0, false}, // 17 characters
		{"a:-1", "", "", 0, false},
	} {
		topic, seq, epoch, err := parseSince(tc.item)
		if !tc.ok {
			assert.Error(t, err, "parseSince(%q)", tc.item)
			continue
		}
		require.NoError(t, err, "parseSince(%q)", tc.item)
		assert.Equal(t, tc.topic, topic, "%q", tc.item)
		assert.Equal(t, tc.seq, seq, "%q", tc.item)
		assert.Equal(t, tc.epoch, epoch, "%q", tc.item)
	}
}

func TestWalkQuery(t *testing.T) {
	h := &Hub{cfg: Config{MaxSubscriptions: 100, MaxTopicBytes: 128}}
	var got []querySub
	require.NoError(t, h.walkQuery("topics=a,b&since=b:4@e1,a:2&topics=c,a&since=a:9", auth.Identity{}, func(q querySub) { got = append(got, q) }))
	assert.Equal(t, []querySub{
		{topic: "a", since: 2, hasSince: true},
		{topic: "b", since: 4, hasSince: true, epoch: "e1"},
		{topic: "c"},
	}, got, "each topic once, in order, the first since for it")

	for _, q := range []string{
		"topics=a&since=b:1",   // a since for a topic not listed
		"topics=a&since=a",     // no seq
		"topics=a,,b",          // an empty name
		"topics=a%zz",          // malformed escape
		"topics=a&since=a:1@E", // an epoch out of its alphabet
	} {
		assert.Error(t, h.walkQuery(q, auth.Identity{}, func(querySub) {}), "%s", q)
	}
}

// TestWalkQueryBounded: a query listing more topics than MaxSubscriptions
// is refused as soon as it passes the bound, and a long one is walked in
// linear time (the index takes over from the scan past 16 topics).
func TestWalkQueryBounded(t *testing.T) {
	h := &Hub{cfg: Config{MaxSubscriptions: 3000, MaxTopicBytes: 128}}
	names, q := bigQuery(2700)
	n := 0
	require.NoError(t, h.walkQuery(q, auth.Identity{}, func(s querySub) {
		assert.Equal(t, names[n], s.topic)
		assert.Equal(t, uint64(n), s.since)
		n++
	}))
	assert.Equal(t, 2700, n)

	h.cfg.MaxSubscriptions = 100
	assert.ErrorIs(t, h.walkQuery(q, auth.Identity{}, func(querySub) {}), errQueryTooLong)
}

// BenchmarkWalkQuery walks an 8 KiB-ish query of 2,700 topics, each with a
// since (20 ms per upgrade when every since and topic scanned the others).
func BenchmarkWalkQuery(b *testing.B) {
	h := &Hub{cfg: Config{MaxSubscriptions: 3000, MaxTopicBytes: 128}}
	_, q := bigQuery(2700)
	for b.Loop() {
		_ = h.walkQuery(q, auth.Identity{}, func(querySub) {})
	}
}

// bigQuery returns the names of n topics t0, t1, ... and a /ws query that
// lists them, each with a since equal to its index.
func bigQuery(n int) (names []string, query string) {
	names = make([]string, n)
	sinces := make([]string, n)
	for i := range names {
		names[i] = "t" + strconv.Itoa(i)
		sinces[i] = names[i] + ":" + strconv.Itoa(i)
	}
	return names, "topics=" + strings.Join(names, ",") + "&since=" + strings.Join(sinces, ",")
}

// TestWalkQueryDoesNotAllocate: a connect's query (a few topics, a since)
// is walked twice per connect, in Upgrade and in OnOpen; the garbage of
// thousands of connects is heap their idle connections keep.
func TestWalkQueryDoesNotAllocate(t *testing.T) {
	h := &Hub{cfg: Config{MaxSubscriptions: 100, MaxTopicBytes: 128}}
	n := 0
	allocs := testing.AllocsPerRun(100, func() {
		if err := h.walkQuery("topics=a,b,c,d&since=a:41@e1", auth.Identity{}, func(querySub) { n++ }); err != nil {
			t.Fatal(err)
		}
	})
	assert.Zero(t, allocs)
	assert.Equal(t, 4*101, n)
}
