package contract

import (
	"strconv"
	"strings"
)

// ValidTopic reports whether name is a topic name: 1 to MaxTopicBytes bytes
// of [A-Za-z0-9] and -_.:@/ (as the fanout server accepts), none of which
// needs escaping in JSON.
func ValidTopic(name string) bool {
	if len(name) == 0 || len(name) > MaxTopicBytes {
		return false
	}
	for i := 0; i < len(name); i++ {
		b := name[i]
		switch {
		case b >= 'a' && b <= 'z', b >= 'A' && b <= 'Z', b >= '0' && b <= '9':
		case b == '-' || b == '_' || b == '.' || b == ':' || b == '@' || b == '/':
		default:
			return false
		}
	}
	return true
}

// ParseTopics splits the value of ?topics= at commas. It returns the distinct
// names in order, and false if there is none or one is not a ValidTopic.
func ParseTopics(raw string) ([]string, bool) {
	var topics []string
	for name := range strings.SplitSeq(raw, ",") {
		if !ValidTopic(name) {
			return nil, false
		}
		dup := false
		for _, t := range topics {
			if t == name {
				dup = true
				break
			}
		}
		if !dup {
			topics = append(topics, name)
		}
	}
	return topics, len(topics) > 0
}

// AppendEnvelope appends the message {"topic":topic,"seq":seq,"data":data}
// to dst and returns the extended slice. topic must be a ValidTopic and data
// valid JSON; data is copied as it is, byte for byte.
func AppendEnvelope(dst []byte, topic string, seq uint64, data []byte) []byte {
	dst = append(dst, `{"topic":"`...)
	dst = append(dst, topic...)
	dst = append(dst, `","seq":`...)
	dst = strconv.AppendUint(dst, seq, 10)
	dst = append(dst, `,"data":`...)
	dst = append(dst, data...)
	return append(dst, '}')
}

// Envelope returns AppendEnvelope(nil, ...) in a slice of exactly its size.
func Envelope(topic string, seq uint64, data []byte) []byte {
	n := len(`{"topic":"","seq":,"data":}`) + len(topic) + 20 + len(data)
	return AppendEnvelope(make([]byte, 0, n), topic, seq, data)
}
