//go:build !linux

package wsconn

// deferAccept does nothing: TCP_DEFER_ACCEPT is Linux's. A connection
// accepted before its request arrives costs its first turn an empty read.
func deferAccept(int) {}
