package broadcast

import (
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/wsconn"
)

// Upgrade accepts a WebSocket upgrade to the hub's endpoint (wire protocol
// v1): ?topics=a,b subscribes at connect, ?since=a:41,b:17 recovers what
// those topics published after the given seqs. With Config.Auth, the
// request's token is checked first (see Authenticate): 401 without a valid
// one, 403 for a topic it does not grant, and the connection is subscribed
// to its user's topic too. A bad query is rejected with 400, a
// shutting-down hub with 503.
func (h *Hub) Upgrade(r *wsconn.Request) (wsconn.Handler, error) {
	id, err := h.Authenticate(r)
	if err != nil {
		return nil, err
	}
	var forbidden string
	err = h.walkQuery(r.RawQuery, id, func(q querySub) {
		if h.cfg.Auth != nil && forbidden == "" && !id.CanSubscribe(q.topic) {
			forbidden = q.topic
		}
	})
	switch {
	case err != nil:
		// The logs get no topic name: it is the request's URL.
		logged := err.Error()
		if errors.Is(err, errInvalidTopicName) {
			logged = errInvalidTopicName.Error()
		}
		return nil, wsconn.RejectRedacted(http.StatusBadRequest, err.Error(), logged, nil)
	case forbidden != "":
		h.forbidden.Add(1)
		return nil, wsconn.RejectRedacted(http.StatusForbidden, "token does not grant topic "+strconv.Quote(forbidden),
			"token does not grant a topic of the query", nil)
	}
	if !h.enter() {
		return nil, wsconn.Reject(http.StatusServiceUnavailable, "shutting down")
	}
	h.exit()
	cl := &client{shard: h.nextShard(), id: id, tokens: float32(h.cfg.MessageBurst), filled: h.clock()}
	return cl, nil
}

// Authenticate verifies the token of an upgrade request (Authorization:
// Bearer, or ?token=) and returns the identity it grants. Without Auth it
// returns the zero Identity and no error. A missing or invalid token gives
// an error for Config.Upgrade that rejects the upgrade with 401 and a
// WWW-Authenticate challenge (RFC 6750).
func (h *Hub) Authenticate(r *wsconn.Request) (auth.Identity, error) {
	if h.cfg.Auth == nil {
		return auth.Identity{}, nil
	}
	id, err := h.cfg.Auth.Verify(auth.Token(r.Authorization, r.RawQuery))
	if err == nil && !h.validTopic(id.UserTopic()) {
		err = errors.New("sub is too long for a user topic")
	}
	switch {
	case err == nil:
		return id, nil
	case errors.Is(err, auth.ErrNoToken):
		h.authFailures.Add(1)
		return id, wsconn.RejectHeader(http.StatusUnauthorized, "missing token", http.Header{"Www-Authenticate": {challengeMissing}})
	}
	h.authFailures.Add(1)
	return id, wsconn.RejectHeader(http.StatusUnauthorized, "invalid token: "+strings.TrimPrefix(err.Error(), "auth: "),
		http.Header{"Www-Authenticate": {challengeInvalid}})
}

// The WWW-Authenticate challenges of a 401 (RFC 6750).
const (
	challengeMissing = `Bearer realm="fanout"`
	challengeInvalid = `Bearer realm="fanout", error="invalid_token"`
)
