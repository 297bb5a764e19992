//go:build !linux

package wsconn

// deferAccept reports false: TCP_DEFER_ACCEPT is Linux's. A connection is
// then registered with the poller at the accept, since its request is
// most often not there yet (see Server.open).
func deferAccept(int) bool { return false }
