package broadcast

import (
	"encoding/json"
	"io"
	"net/http"
)

// PublishHandler serves POST /publish?topic=NAME: the body, a JSON value, is
// published to the topic. It answers 202 with {"seq":N}, 400 when the topic
// or the body is invalid, 405 for another method and 503 once the hub is
// closed. (The server answers 413 for a body over its size limit before this
// handler runs.)
func (h *Hub) PublishHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST"})
			return
		}
		data, err := io.ReadAll(r.Body)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "cannot read body: " + err.Error()})
			return
		}
		seq, err := h.Publish(r.URL.Query().Get("topic"), data)
		switch err {
		case nil:
			writeJSON(w, http.StatusAccepted, map[string]uint64{"seq": seq})
		case ErrInvalidTopic:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid or missing topic"})
		case ErrInvalidData:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body is not valid JSON"})
		default:
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "shutting down"})
		}
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
