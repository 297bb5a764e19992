package contract

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
)

// PublishFunc sends data, a valid JSON value, to every subscriber of topic as
// the topic's next message and returns that message's seq (1, 2, ... per
// topic). Calls for one topic may be concurrent; the seq order must be the
// order in which every subscriber receives them.
type PublishFunc func(topic string, data []byte) uint64

// PublishHandler serves POST /publish?topic=NAME with a JSON body: it calls
// publish and answers 202 {"seq":N}. It answers 405 for another method, 400
// for a missing or invalid topic or a body that is not JSON, and 413 for a
// body over MaxPublishBytes.
func PublishHandler(publish PublishFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeJSON(w, http.StatusMethodNotAllowed, errorBody{"use POST"})
			return
		}
		topic := r.URL.Query().Get("topic")
		if !ValidTopic(topic) {
			writeJSON(w, http.StatusBadRequest, errorBody{"invalid or missing topic"})
			return
		}
		data, err := ReadJSONBody(w, r)
		if err != nil {
			status := http.StatusBadRequest
			if errors.As(err, new(*http.MaxBytesError)) {
				status = http.StatusRequestEntityTooLarge
			}
			writeJSON(w, status, errorBody{err.Error()})
			return
		}
		writeJSON(w, http.StatusAccepted, seqBody{publish(topic, data)})
	})
}

// ErrNotJSON is returned by ReadJSONBody for a body that is not one JSON value.
var ErrNotJSON = errors.New("body is not valid JSON")

// ReadJSONBody reads the request body, at most MaxPublishBytes, and checks
// that it is valid JSON. The returned slice is the caller's.
func ReadJSONBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxPublishBytes))
	if err != nil {
		return nil, err
	}
	if !json.Valid(data) {
		return nil, ErrNotJSON
	}
	return data, nil
}

type errorBody struct {
	Error string `json:"error"`
}

type seqBody struct {
	Seq uint64 `json:"seq"`
}
