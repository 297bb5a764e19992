package broadcast

import (
	"time"

	"github.com/gobwas/ws"

	"github.com/fanout/fanout/auth"
	"github.com/fanout/fanout/wsconn"
)

// Echo routes an /echo upgrade request: behind the same token as /ws (an
// open echo would be an unauthenticated way to hold connections and
// bandwidth), it returns a wsconn.Echo that, like a /ws connection, is
// closed with CloseTokenExpired at its token's exp. Without Config.Auth it
// returns a plain wsconn.Echo.
func (h *Hub) Echo(r *wsconn.Request) (wsconn.Handler, error) {
	id, err := h.Authenticate(r)
	if err != nil {
		return nil, err
	}
	if h.cfg.Auth == nil {
		return wsconn.Echo{}, nil
	}
	return &echo{hub: h, id: id}, nil
}

// echo is wsconn.Echo for a connection opened with a token.
type echo struct {
	wsconn.Echo
	hub *Hub
	id  auth.Identity
}

// Expired closes the connection at its token's exp (wsconn.Expirer).
func (e *echo) Expired(_ *wsconn.Conn, now time.Time) (ws.StatusCode, string, bool) {
	return e.hub.tokenExpired(e.id, now)
}

// tokenExpired is the Expired of a connection opened with id: once its
// token's exp has passed, it is closed with CloseTokenExpired, and counted.
func (h *Hub) tokenExpired(id auth.Identity, now time.Time) (ws.StatusCode, string, bool) {
	if !id.Expired(now) {
		return 0, "", false
	}
	h.expiryCloses.Add(1)
	return CloseTokenExpired, "token expired", true
}
