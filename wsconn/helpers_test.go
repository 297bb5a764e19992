package wsconn_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/fanout/fanout/wsconn"
)

// startServer runs a Server with the echo endpoint at /echo on a loopback
// port and returns its address. The server is shut down when the test ends.
func startServer(t testing.TB, cfg wsconn.Config) (*wsconn.Server, string) {
	t.Helper()
	if cfg.Upgrade == nil {
		cfg.Upgrade = func(r *wsconn.Request) (wsconn.Handler, error) {
			if r.Path == "/echo" {
				return wsconn.Echo{}, nil
			}
			return nil, wsconn.Reject(http.StatusNotFound, "not found")
		}
	}
	if cfg.HTTP == nil {
		mux := http.NewServeMux()
		mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("ok\n")) })
		cfg.HTTP = mux
	}
	srv, err := wsconn.NewServer(cfg)
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		require.NoError(t, srv.Shutdown(ctx))
		require.True(t, errors.Is(<-served, wsconn.ErrServerClosed))
	})
	return srv, ln.Addr().String()
}
