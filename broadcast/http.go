package broadcast

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"

	"github.com/fanout/fanout/auth"
)

// PublishHandler serves POST /publish?topic=NAME: the body, a JSON value, is
// published to the topic. It answers 202 with {"seq":N}, 400 when the topic
// or the body is invalid, 405 for another method, 413 for a body over
// MaxDataBytes and 503 once the hub is closed. Without ?topic=, the body is
// a batch (see servePublishBatch).
//
// With Auth or PublishKey configured, the request needs
// "Authorization: Bearer CREDENTIAL", where the credential is the publish key
// or a token whose publish patterns grant the topic: 401 without a valid
// one, 403 when the token does not grant the topic.
func (h *Hub) PublishHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			writeJSON(w, http.StatusMethodNotAllowed, map[string]string{"error": "use POST"})
			return
		}
		query := r.URL.Query()
		if !query.Has("topic") {
			h.servePublishBatch(w, r)
			return
		}
		topic := query.Get("topic")
		if status, msg := h.authorizePublish(r.Header.Get("Authorization"), topic); status != 0 {
			refusePublish(w, r, status, msg)
			return
		}
		data, err := io.ReadAll(r.Body)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "cannot read body: " + err.Error()})
			return
		}
		seq, err := h.Publish(topic, data)
		switch err {
		case nil:
			writeJSON(w, http.StatusAccepted, map[string]uint64{"seq": seq})
		case ErrInvalidTopic:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "invalid or missing topic"})
		case ErrInvalidData:
			writeJSON(w, http.StatusBadRequest, map[string]string{"error": "body is not valid JSON"})
		case ErrTooManyTopics:
			w.Header().Set("Retry-After", "10")
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "topic limit reached: the topic does not exist and the server holds --max-topics"})
		case ErrTooLarge:
			writeJSON(w, http.StatusRequestEntityTooLarge, map[string]string{"error": "body is larger than " + strconv.Itoa(h.cfg.MaxDataBytes) + " bytes"})
		default:
			if errors.Is(err, ErrUnavailable) {
				w.Header().Set("Retry-After", "1")
				writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": unavailableMessage(err, strconv.Quote(topic))})
				return
			}
			writeJSON(w, http.StatusServiceUnavailable, map[string]string{"error": "shutting down"})
		}
	})
}

// refusePublish answers a publish refused for its credential.
func refusePublish(w http.ResponseWriter, r *http.Request, status int, msg string) {
	if status == http.StatusUnauthorized {
		challenge := challengeInvalid
		if auth.Token(r.Header.Get("Authorization"), "") == "" {
			challenge = challengeMissing
		}
		w.Header().Set("WWW-Authenticate", challenge)
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

// publisher is who a credential lets publish: on every topic (no
// authentication, or the publish key), or on what a token grants.
type publisher struct {
	all bool
	id  auth.Identity
}

// may reports whether p may publish on topic.
func (p publisher) may(topic string) bool { return p.all || p.id.CanPublish(topic) }

// publisherOf checks the credential of a publish request; it returns status
// 0 and who publishes, or the status and why not.
func (h *Hub) publisherOf(authorization string) (p publisher, status int, msg string) {
	if h.cfg.Auth == nil && h.cfg.PublishKey == "" {
		return publisher{all: true}, 0, ""
	}
	// From the header only: a query string ends up in access logs.
	cred := auth.Token(authorization, "")
	switch {
	case cred == "":
		h.authFailures.Add(1)
		return p, http.StatusUnauthorized, "missing credential: send Authorization: Bearer with the publish key or a token"
	case auth.KeyMatches(cred, h.cfg.PublishKey):
		return publisher{all: true}, 0, ""
	case h.cfg.Auth == nil:
		h.authFailures.Add(1)
		return p, http.StatusUnauthorized, "invalid publish key"
	}
	id, err := h.cfg.Auth.Verify(cred)
	if err != nil {
		h.authFailures.Add(1)
		return p, http.StatusUnauthorized, "invalid token: " + strings.TrimPrefix(err.Error(), "auth: ")
	}
	return publisher{id: id}, 0, ""
}

// authorizePublish checks the credential of a publish to topic; it returns
// status 0 if the publish may go ahead, else the status and why.
func (h *Hub) authorizePublish(authorization, topic string) (status int, msg string) {
	p, status, msg := h.publisherOf(authorization)
	switch {
	case status != 0:
		return status, msg
	case !h.validTopic(topic):
		return 0, "" // Publish answers 400
	case !p.may(topic):
		h.forbidden.Add(1)
		return http.StatusForbidden, "token does not grant publishing on " + strconv.Quote(topic)
	}
	return 0, ""
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
