package broadcast

import (
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"

	"github.com/fanout/fanout/auth"
)

// errQueryTooLong is walkQuery's error for a query that lists more topics
// than MaxSubscriptions.
var errQueryTooLong = errors.New("too many topics")

// errInvalidTopicName is the error of a query that lists an invalid topic,
// wrapped with its name.
var errInvalidTopicName = errors.New("invalid topic name")

// querySub is a topic of a /ws query, with what since= says of it.
type querySub struct {
	topic    string
	since    uint64
	hasSince bool
	epoch    string // "" when since has no @EPOCH
}

// walkQuery checks the query of a /ws request and calls f for each topic in
// topics=, once, in order, with what since= says of it. It works in time
// linear in the query's length, and stops at the first error, or once the
// topics exceed MaxSubscriptions (errQueryTooLong); the user's own topic
// (of id, the connection's identity) is not counted, as a subscription
// never counts it (see client.subscribe).
//
// It allocates nothing for a query of up to four topics, as a connect's
// usually is: it runs twice for each, in Upgrade and in OnOpen, and a
// connect storm's garbage is heap that idle connections keep.
func (h *Hub) walkQuery(raw string, id auth.Identity, f func(querySub)) error {
	var buf [4]querySub
	subs := buf[:0]
	var index map[string]int // once there are too many topics to scan
	find := func(topic string) int {
		if index != nil {
			if i, ok := index[topic]; ok {
				return i
			}
			return -1
		}
		for i := range subs {
			if subs[i].topic == topic {
				return i
			}
		}
		return -1
	}
	own := 0 // 1 once the user's own topic is listed
	var sinceBuf [2]string
	sinces := sinceBuf[:0]
	for rest := raw; rest != ""; {
		var pair string
		pair, rest, _ = strings.Cut(rest, "&")
		key, value, _ := strings.Cut(pair, "=")
		if key != "topics" && key != "since" {
			continue
		}
		if strings.ContainsAny(value, "%+") {
			v, err := url.QueryUnescape(value)
			if err != nil {
				return errors.New("malformed query")
			}
			value = v
		}
		if key == "since" {
			sinces = append(sinces, value) // after every topic is known
			continue
		}
		for rest, more := value, true; more; {
			var name string
			name, rest, more = strings.Cut(rest, ",")
			if !h.validTopic(name) {
				return fmt.Errorf("%w %s", errInvalidTopicName, strconv.Quote(name))
			}
			if find(name) >= 0 {
				continue
			}
			mine := id.IsUserTopic(name)
			if !mine && len(subs)-own == h.cfg.MaxSubscriptions {
				return errQueryTooLong
			}
			if mine {
				own = 1
			}
			subs = append(subs, querySub{topic: name})
			if index == nil && len(subs) > 16 {
				index = make(map[string]int, len(subs))
				for i, s := range subs {
					index[s.topic] = i
				}
			} else if index != nil {
				index[name] = len(subs) - 1
			}
		}
	}
	// since: every item is topic:seq or topic:seq@EPOCH, with a topic that
	// topics lists; the first item for a topic counts.
	for _, list := range sinces {
		for rest := list; rest != ""; {
			var item string
			item, rest, _ = strings.Cut(rest, ",")
			topic, seq, epoch, err := parseSince(item)
			if err != nil {
				return err
			}
			i := find(topic)
			if i < 0 {
				return errors.New("since names a topic that topics does not list")
			}
			if !subs[i].hasSince {
				subs[i].since, subs[i].hasSince, subs[i].epoch = seq, true, epoch
			}
		}
	}
	for _, s := range subs {
		f(s)
	}
	return nil
}

// parseSince splits a since item topic:seq or topic:seq@EPOCH. Topic names
// may hold ':' and '@', so the item splits at its last ':', and the seq ends
// at the '@' after it.
func parseSince(item string) (topic string, seq uint64, epoch string, err error) {
	i := strings.LastIndexByte(item, ':')
	if i < 0 {
		return "", 0, "", errors.New("since must be topic:seq or topic:seq@epoch")
	}
	n, epoch, hasEpoch := strings.Cut(item[i+1:], "@")
	seq, err = strconv.ParseUint(n, 10, 64)
	if err != nil || hasEpoch && !validEpoch(epoch) {
		return "", 0, "", errors.New("since must be topic:seq or topic:seq@epoch")
	}
	return item[:i], seq, epoch, nil
}

// validEpoch reports whether s can be an epoch: 1 to 16 of 0-9 a-z.
func validEpoch(s string) bool {
	if len(s) == 0 || len(s) > 16 {
		return false
	}
	for _, c := range []byte(s) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z') {
			return false
		}
	}
	return true
}
