package broadcast_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/broadcast"
	"github.com/fanout/fanout/wsconn"
)

type batchResult struct {
	Topic string  `json:"topic"`
	Seq   *uint64 `json:"seq"`
	Error string  `json:"error"`
}

// postBatch posts body to /publish with no topic, with authorization
// unless it is "", and returns the status and the results.
func postBatch(t *testing.T, ts *testServer, authorization, body string) (int, []batchResult, string) {
	t.Helper()
	resp, b := ts.postTo(t, "/publish", authorization, []byte(body))
	var res []batchResult
	if resp.StatusCode == http.StatusAccepted {
		require.NoError(t, json.Unmarshal(b, &res), "%s", b)
	}
	return resp.StatusCode, res, string(b)
}

func seqOf(r batchResult) uint64 {
	if r.Seq == nil {
		return 0
	}
	return *r.Seq
}

// TestPublishBatch: POST /publish without ?topic= publishes a JSON array,
// or NDJSON, of {"topic","data"} in order, and answers each item with its
// seq or its error, in the same order.
func TestPublishBatch(t *testing.T) {
	ts := startHub(t, broadcast.Config{MaxTopicBytes: 16}, wsconn.Config{})
	c := mustDial(t, "gorilla", ts.addr, "topics=a")
	mustReadSubscribed(t, c, "a")

	status, res, body := postBatch(t, ts, "", `[{"topic":"a","data":{"n":1}},{"topic":"b","data":2},{"topic":"a","data":"three"}]`)
	require.Equal(t, http.StatusAccepted, status, body)
	require.Len(t, res, 3)
	assert.Equal(t, []uint64{1, 1, 2}, []uint64{seqOf(res[0]), seqOf(res[1]), seqOf(res[2])})
	assert.Equal(t, []string{"a", "b", "a"}, []string{res[0].Topic, res[1].Topic, res[2].Topic})
	assert.JSONEq(t, `{"n":1}`, string(mustReadMessage(t, c, "a", 1).Data))
	assert.JSONEq(t, `"three"`, string(mustReadMessage(t, c, "a", 2).Data))

	// NDJSON, with items refused on their own.
	status, res, body = postBatch(t, ts, "", "{\"topic\":\"a\",\"data\":4}\n\n{\"topic\":\"a b\",\"data\":1}\n{\"topic\":\"a\"}\n{\"topic\":\"much-too-long-for-16\",\"data\":1}\n{\"topic\":\"a\",\"data\":[5]}\n")
	require.Equal(t, http.StatusAccepted, status, body)
	require.Len(t, res, 5)
	assert.Equal(t, uint64(3), seqOf(res[0]))
	assert.Equal(t, broadcast.CodeInvalidTopic, res[1].Error)
	assert.Equal(t, broadcast.CodeInvalidData, res[2].Error)
	assert.Equal(t, broadcast.CodeInvalidTopic, res[3].Error)
	assert.Equal(t, "much-too-long-fo", res[3].Topic, "an invalid topic is echoed cut short")
	assert.Equal(t, uint64(4), seqOf(res[4]))
	mustReadMessage(t, c, "a", 3)
	mustReadMessage(t, c, "a", 4)

	// The last ones: a single publish that forgot its ?topic=.
	for _, bad := range []string{"", "   ", `{"topic":"a","data":1`, `[1,2]`, "not json\n", `{"price":1}`, `{"data":1}`} {
		status, _, body := postBatch(t, ts, "", bad)
		assert.Equal(t, http.StatusBadRequest, status, "%q: %s", bad, body)
	}
	var many bytes.Buffer
	for i := range broadcast.MaxBatchItems + 1 {
		fmt.Fprintf(&many, "{\"topic\":\"m\",\"data\":%d}\n", i)
	}
	status, _, body = postBatch(t, ts, "", many.String())
	assert.Equal(t, http.StatusBadRequest, status, body)
	assert.Contains(t, body, "more than")
	assert.Equal(t, 2, ts.hub.Stats().Topics, "nothing of a refused batch is published: a and b only")
}

// TestPublishBatchAuth: a batch needs a credential, as a publish does; a
// token publishes the items on the topics it grants, the others are
// refused one by one (forbidden).
func TestPublishBatchAuth(t *testing.T) {
	ts := startAuthHub(t, broadcast.Config{})
	status, _, _ := postBatch(t, ts, "", `[{"topic":"a","data":1}]`)
	assert.Equal(t, http.StatusUnauthorized, status)
	status, _, _ = postBatch(t, ts, "Bearer nonsense", `[{"topic":"a","data":1}]`)
	assert.Equal(t, http.StatusUnauthorized, status)

	tok := authToken(t, "svc", nil, []string{"news.*"}, inAnHour())
	status, res, body := postBatch(t, ts, "Bearer "+tok, `[{"topic":"news.eu","data":1},{"topic":"sports","data":2},{"topic":"news.us","data":3}]`)
	require.Equal(t, http.StatusAccepted, status, body)
	require.Len(t, res, 3)
	assert.Equal(t, uint64(1), seqOf(res[0]))
	assert.Equal(t, broadcast.CodeForbidden, res[1].Error)
	assert.Nil(t, res[1].Seq)
	assert.Equal(t, uint64(1), seqOf(res[2]))
}

// TestPublishBatchLineNumbers: an NDJSON error names the line of the body
// it is on, blank lines before it counted (they were not).
func TestPublishBatchLineNumbers(t *testing.T) {
	ts := startHub(t, broadcast.Config{}, wsconn.Config{})
	status, _, body := postBatch(t, ts, "", "\n\n{\"topic\":\"a\",\"data\":1}\n{oops\n")
	assert.Equal(t, http.StatusBadRequest, status)
	assert.Contains(t, body, "line 4 ")
}
