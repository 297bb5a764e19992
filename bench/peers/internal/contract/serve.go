package contract

import (
	"context"
	"errors"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// ParseFlags parses the command line, which every peer shares:
//
//	--listen HOST:PORT   where to listen (default 127.0.0.1:8080)
//
// and returns the listen address.
func ParseFlags(name string) string {
	fs := flag.NewFlagSet(name, flag.ExitOnError)
	listen := fs.String("listen", DefaultListen, "where to listen, HOST:PORT")
	_ = fs.Parse(os.Args[1:])
	if fs.NArg() > 0 {
		log.Fatalf("%s: unexpected arguments %q", name, fs.Args())
	}
	return *listen
}

// SignalContext returns a context that is cancelled on SIGINT or SIGTERM.
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}

// ServeHTTP serves handler with net/http on addr until ctx is done, then
// stops the listener and waits up to ShutdownTimeout for plain HTTP requests
// to finish. Hijacked (WebSocket) connections are the caller's to close.
// It returns nil after a stop by ctx.
func ServeHTTP(ctx context.Context, addr string, handler http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	log.Printf("listening on %s", ln.Addr())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), ShutdownTimeout)
	defer cancel()
	err = srv.Shutdown(sctx)
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	return err
}
