package client_test

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/client"
)

// TestValidTopicAgrees: client.ValidTopic is a copy of the server's rule
// (auth.TopicChars), kept so that applications importing the client do not
// pull in the server's JWT dependency; here the two are held together, on
// every byte, alone and inside a name.
func TestValidTopicAgrees(t *testing.T) {
	for b := range 256 {
		for _, name := range []string{string(rune(b)), "a" + string([]byte{byte(b)}) + "z"} {
			assert.Equal(t, auth.TopicChars(name), client.ValidTopic(name), "%q", name)
		}
	}
	// The one difference: an empty name is no topic, which the server
	// checks apart (its length).
	assert.False(t, client.ValidTopic(""))
}
