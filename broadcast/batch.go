package broadcast

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
)

// MaxBatchItems bounds the messages of one batch publish; its body is also
// bounded by the server's body limit (--max-publish-bytes).
const MaxBatchItems = 1000

// batchItem is one message of a batch publish.
type batchItem struct {
	Topic string          `json:"topic"`
	Data  json.RawMessage `json:"data"`
}

// batchResult answers one batchItem: its seq, or why it was not published.
type batchResult struct {
	Topic   string  `json:"topic"`
	Seq     *uint64 `json:"seq,omitempty"`
	Error   string  `json:"error,omitempty"` // an error code of the WebSocket protocol
	Message string  `json:"message,omitempty"`
}

// servePublishBatch serves POST /publish without ?topic=: the body is a
// JSON array of {"topic","data"} items, or the same items one a line
// (NDJSON). They are published in order, each on its own: the answer, 202,
// is an array of results in the same order, each {"topic","seq"} or
// {"topic","error","message"} with an error code of the WebSocket protocol
// (invalid_topic, invalid_data, too_large, forbidden, too_many_topics,
// unavailable). The request as a whole gets 400 when its body is not a
// batch or holds more than MaxBatchItems, and 401 for its credential.
func (h *Hub) servePublishBatch(w http.ResponseWriter, r *http.Request) {
	p, status, msg := h.publisherOf(r.Header.Get("Authorization"))
	if status != 0 {
		refusePublish(w, r, status, msg)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": "cannot read body: " + err.Error()})
		return
	}
	items, err := parseBatch(body)
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return
	}
	results := make([]batchResult, len(items))
	for i, it := range items {
		res := &results[i]
		res.Topic = it.Topic
		if h.validTopic(it.Topic) && !p.may(it.Topic) {
			h.forbidden.Add(1)
			res.Error, res.Message = CodeForbidden, "token does not grant publishing on "+strconv.Quote(it.Topic)
			continue
		}
		seq, err := h.Publish(it.Topic, it.Data)
		if err != nil {
			res.Topic = h.cut(it.Topic)
			res.Error, res.Message = h.publishError(err, it.Topic)
			continue
		}
		res.Seq = &seq
	}
	writeJSON(w, http.StatusAccepted, results)
}

// parseBatch parses a batch body: a JSON array of items, or one item a
// line.
func parseBatch(body []byte) ([]batchItem, error) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 {
		return nil, errors.New("empty batch: send a JSON array of {\"topic\",\"data\"}, or one a line, or use ?topic=")
	}
	var items []batchItem
	if trimmed[0] == '[' {
		if err := json.Unmarshal(trimmed, &items); err != nil {
			return nil, errors.New("batch is not a JSON array of {\"topic\",\"data\"}: " + err.Error())
		}
	} else {
		for n, line := range bytes.Split(body, []byte("\n")) {
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue
			}
			var it batchItem
			if err := json.Unmarshal(line, &it); err != nil {
				return nil, errors.New("batch line " + strconv.Itoa(n+1) + " is not a JSON object {\"topic\",\"data\"}: " + err.Error())
			}
			items = append(items, it)
			if len(items) > MaxBatchItems {
				break
			}
		}
	}
	if len(items) > MaxBatchItems {
		return nil, errors.New("more than " + strconv.Itoa(MaxBatchItems) + " items in a batch")
	}
	for _, it := range items {
		if it.Topic != "" {
			return items, nil
		}
	}
	// Not one item names a topic: most likely a single publish that
	// forgot its ?topic=.
	return nil, errors.New("missing topic: publish with ?topic=NAME, or send a batch of {\"topic\",\"data\"}")
}
